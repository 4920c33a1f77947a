"""Active-learning steps from the CLI: each step trains on every answer, its model asks the next batch, and the
learning curve it prints is what the run's files say."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from typer.testing import CliRunner

from hardmine.cli import app

runner = CliRunner()
TRAIN = ["--image-size", "32", "--epochs", "2", "--model", "tiny", "--batch-size", "32"]
BATCHES = 3


def _private_copy(root: Path, tmp: Path) -> Path:
    """A copy of the data, the pool and the run under ``tmp`` that names its own files (answers stay its own)."""
    from hardmine.record.manifest import Manifest

    for name in ("demo", "demo-pool", "run"):
        shutil.copytree(root / name, tmp / name)
    for path in [tmp / "run" / n for n in ("query.csv", "query.json", "samples.csv", "config.json")] + list(
            (tmp / "run" / "queries").glob("*/query.*")):  # fmt: skip
        path.write_text(path.read_text().replace(str(root), str(tmp)))
    Manifest(tmp / "run").rerecord_run_files()
    return tmp


def _answer_latest(root: Path) -> Path:
    """The true class of every image of the latest query, as the labeling page downloads it."""
    pool = pd.read_csv(root / "demo-pool" / "pool.csv", dtype=str)
    query = pd.read_csv(root / "run" / "query.csv", dtype=str)
    answers = pd.DataFrame({"image_id": query["id"], "label": query["id"].map(dict(zip(pool["id"], pool["dx"],
                                                                                        strict=True)))})  # fmt: skip
    path = root / f"answers-{len(list(root.glob('answers-*.csv'))) + 1}.csv"
    answers.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def three_batches(tmp_path_factory) -> tuple[Path, list[str]]:
    """query -> label -> round, three times, from the CLI on demo data; the outputs of every command."""
    root = tmp_path_factory.mktemp("steps")
    assert runner.invoke(app, ["demo-data", str(root / "demo"), "--images", "300", "--size", "32",
                               "--pool", "160"]).exit_code == 0  # fmt: skip
    pool = str(root / "demo-pool" / "pool.csv")
    outputs = []
    result = runner.invoke(app, ["round", "--data", str(root / "demo"), "--out", str(root / "run"), "--pool", pool,
                                 "--budget", "12", *TRAIN])  # fmt: skip
    assert result.exit_code == 0, result.output
    outputs.append(result.output)
    for _ in range(BATCHES):
        labeled = runner.invoke(app, ["label", str(root / "run"), str(_answer_latest(root))])
        assert labeled.exit_code == 0, labeled.output
        result = runner.invoke(app, ["round", "--config", str(root / "run" / "config.json"), "--out",
                                     str(root / "run"), "--pool", pool, "--budget", "12"])  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs.append(labeled.output + result.output)
    return root, outputs


def test_each_step_trains_on_every_answer_and_its_model_asks_the_next_batch(three_batches):
    root, outputs = three_batches
    run = root / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    split = pd.read_csv(run / "split.csv", dtype=str)
    answered = pd.read_csv(run / "labeled.csv", dtype=str)
    batches = [pd.read_csv(run / "queries" / f"{b:03d}" / "query.csv", dtype=str) for b in range(1, BATCHES + 2)]
    train = set(split.loc[split["split"] == "train", "id"])
    original = len(train - set(answered["image_id"]))
    labels = [original]  # what each step saw: round 0's split, then every batch answered so far
    for batch in batches[:BATCHES]:
        labels.append(labels[-1] + int(batch["id"].isin(train).sum()))
    # no mining round was asked: round 0, then one step per answered batch, each from the step before
    assert sorted(manifest["rounds"], key=int) == [str(r) for r in range(BATCHES + 1)]
    for r in range(1, BATCHES + 1):
        info = manifest["rounds"][str(r)]
        assert (info["kind"], info["update"], info["init_round"], info["labels"]) == ("step", "finetune", r - 1,
                                                                                    labels[r])  # fmt: skip
    for b in range(1, BATCHES + 2):  # batch b was asked by the newest step, trained on every answer before it
        asked = json.loads((run / "queries" / f"{b:03d}" / "query.json").read_text())
        assert (asked["batch"], asked["round"], asked["labels"]) == (b, b - 1, labels[b - 1])
    assert not set(batches[-1]["id"]) & set(answered["image_id"])  # an answered image is never asked again
    assert "mining did not help" not in "".join(outputs)  # no mining was asked for
    assert "Round 0 is the only round" in " ".join(outputs[0].split())


def test_the_learning_curve_is_what_the_run_files_say(three_batches):
    root, outputs = three_batches
    run = root / "run"
    report = json.loads((run / "report.json").read_text())
    curve = report["learning_curve"]["steps"]
    samples = pd.read_csv(run / "samples.csv", dtype={"id": str}).set_index("id")
    split = pd.read_csv(run / "split.csv", dtype=str)
    answered = pd.read_csv(run / "labeled.csv", dtype=str)
    train_ids = split.loc[split["split"] == "train", "id"]
    seen = list(train_ids[~train_ids.isin(answered["image_id"])])
    assert [row["round"] for row in curve] == list(range(BATCHES + 1))
    for b, row in enumerate(curve):
        if b:
            batch = pd.read_csv(run / "queries" / f"{b:03d}" / "query.csv", dtype=str)
            new = [i for i in batch["id"] if i in set(train_ids)]  # unsure answers never join
            seen += new
            assert row["batch"] == len(new) and row["batch_positives"] == int(samples.loc[new, "label"].sum())
        assert row["labels"] == len(seen) and row["positives"] == int(samples.loc[seen, "label"].sum())
        preds = pd.read_csv(run / f"round-{row['round']:03d}" / "preds_val.csv")
        y, p = preds["label"].to_numpy(), preds["prob_pos"].to_numpy()
        val = row["val"]
        assert val["auroc"]["value"] == pytest.approx(roc_auc_score(y, p))
        assert val["auprc"]["value"] == pytest.approx(average_precision_score(y, p))
        assert val["auroc"]["low"] <= val["auroc"]["value"] <= val["auroc"]["high"]
        fpr, tpr, _ = roc_curve(y, p)
        assert val["sens_at_spec90"]["value"] == pytest.approx(tpr[fpr <= 0.1].max())
    printed = " ".join(outputs[-1].split())
    assert "learning curve: round 0 and each active-learning step" in printed
    for row in curve:  # the printout's rows: labels so far and melanomas among them
        assert f"{row['labels']} {row['positives']}" in printed
    html = (run / "report.html").read_text()
    assert (run / "learning_curve.png").stat().st_size > 0 and "Learning curve" in html
    # the report links the labeling page of the latest query and the galleries, and its test table's heading
    # names exactly the columns it holds
    assert 'href="label/index.html"' in html and 'href="round-000/gallery/index.html"' in html
    assert f"<h2>Test: round 0, best (round {report['best_round']}) (returned)</h2>" in html
    handed = report["handed_back"]
    assert handed["newest"] == BATCHES and report["best_round"] == handed["round"]
    assert handed["round"] == BATCHES or handed["difference"]["verdict"] == "worse"


def test_round_without_pool_trains_the_new_labels_and_then_nothing_more(three_batches, tmp_path):
    root = _private_copy(three_batches[0], tmp_path)
    labeled = runner.invoke(app, ["label", str(root / "run"), str(_answer_latest(root))])
    assert labeled.exit_code == 0 and "to batch 4" in labeled.output, labeled.output
    args = ["round", "--config", str(root / "run" / "config.json"), "--out", str(root / "run")]
    result = runner.invoke(app, args)  # no --pool, no --n: the default 3 mining rounds, after the step
    assert result.exit_code == 0, result.output
    rounds = json.loads((root / "run" / "manifest.json").read_text())["rounds"]
    assert rounds[str(BATCHES + 1)]["kind"] == "step"  # the new labels were trained on first
    assert [rounds[str(r)].get("kind") for r in range(BATCHES + 2, BATCHES + 5)] == [None] * 3  # mining rounds


def test_a_renamed_copy_of_a_test_image_is_left_out_of_the_query_and_named(three_batches, tmp_path):
    root, _ = three_batches
    split = pd.read_csv(root / "run" / "split.csv", dtype=str)
    samples = pd.read_csv(root / "run" / "samples.csv", dtype=str).set_index("id")
    test_id = split.loc[split["split"] == "test", "id"].iloc[0]
    shutil.copytree(root / "demo-pool", tmp_path / "pool")
    shutil.copy(samples.loc[test_id, "path"], tmp_path / "pool" / "innocent.jpg")
    pool = pd.read_csv(tmp_path / "pool" / "pool.csv", dtype=str)
    pool = pd.concat([pd.DataFrame({"id": ["innocent"], "path": ["innocent.jpg"], "group": ["new-lesion"],
                                    "dx": ["nv"]}), pool], ignore_index=True)  # fmt: skip
    pool.to_csv(tmp_path / "pool" / "pool.csv", index=False)
    shutil.copytree(root / "run", tmp_path / "run")
    result = runner.invoke(app, ["query", str(tmp_path / "run"), "--pool", str(tmp_path / "pool" / "pool.csv"),
                                 "--budget", "100", "--method", "random"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"innocent = {test_id} (test)" in " ".join(result.output.split())
    assert "innocent" not in set(pd.read_csv(tmp_path / "run" / "query.csv", dtype=str)["id"])


def test_attack_label_never_takes_a_file_an_edited_query_names(three_batches, tmp_path):
    root = _private_copy(three_batches[0], tmp_path)
    secret = tmp_path / "secret.jpg"
    shutil.copy(next((root / "demo").rglob("*.jpg")), secret)  # an image, but not one of the pool
    answers = _answer_latest(root)
    for name in ("query.csv", f"queries/{BATCHES + 1:03d}/query.csv"):
        query = pd.read_csv(root / "run" / name, dtype=str, keep_default_na=False)
        query.loc[0, "path"] = str(secret)
        query.to_csv(root / "run" / name, index=False)
    samples = (root / "run" / "samples.csv").read_bytes()
    result = runner.invoke(app, ["label", str(root / "run"), str(answers)])
    assert result.exit_code == 2 and "outside the pool it was asked from" in result.output, result.output
    assert (root / "run" / "samples.csv").read_bytes() == samples  # nothing taken
    assert not list((root / "demo").glob("hardmine-answers/images/*secret*"))
