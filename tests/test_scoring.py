import importlib.util
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hardmine.cli import app
from hardmine.core.index import normalise
from hardmine.core.scores import SCORE_COLUMNS, dynamics_scores, score_table
from hardmine.engine.runtime import Engine

runner = CliRunner()


def test_score_table_by_hand():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.5, 0.4]])
    labels = np.array([1, 1, 0])
    table = score_table(["a", "b", "c"], labels, logits, threshold=0.5)
    assert tuple(table.columns) == SCORE_COLUMNS
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert np.allclose(table["prob_pos"], p[:, 1])
    assert np.allclose(table["logit_margin"], [-2.0, 1.0, 0.1])
    assert np.allclose(table["loss"], -np.log(p[[0, 1, 2], labels]))
    assert table["pred"].tolist() == [0, 1, 0] and table["correct"].tolist() == [False, True, True]
    assert np.allclose(table["el2n"], np.linalg.norm(p - np.eye(2)[labels], axis=1))
    assert np.allclose(table["entropy"], -(p * np.log(p)).sum(1))


def test_dynamics_confidence_variability_forgetting():
    p_true = np.array([[0.9, 0.2, np.nan], [0.4, 0.3, 0.8], [0.8, 0.6, 0.9]])
    dyn = dynamics_scores(np.zeros_like(p_true), p_true)
    assert np.allclose(dyn["confidence"], [0.7, 11 / 30, 0.85])
    assert dyn["forgetting"].tolist() == [1, 0, 0]
    assert np.allclose(dyn["variability"][2], 0.05)
    assert np.allclose(dyn["dynamics"], 1 - dyn["confidence"])


def test_normalise_centres_and_rejects_dtype():
    emb = np.array([[1.0, 1.0], [3.0, 1.0]])
    out = normalise(emb, center=emb.mean(0))
    assert np.allclose(out, [[-1, 0], [1, 0]])
    assert normalise(emb, "float16").dtype == np.float16
    with pytest.raises(ValueError, match="float64"):
        normalise(emb, "float64")


@pytest.fixture(scope="module")
def trained_once(demo_dir, tmp_path_factory):
    """Round 0 trained once for the module; each test gets its own copy (:func:`trained_run`)."""
    run = tmp_path_factory.mktemp("scored") / "run"
    args = [
        "train",
        "--data",
        str(demo_dir), "--model", "tiny",
        "--out",
        str(run),
        "--image-size",
        "24",
        "--epochs",
        "3",
        "--device",
        "cpu",
    ]
    assert runner.invoke(app, args).exit_code == 0
    return run


@pytest.fixture
def trained_run(trained_once, tmp_path):
    """A private copy of the trained run: what one test scores or mines never reaches another."""
    shutil.copytree(trained_once, tmp_path / "run")
    return tmp_path / "run"


def test_cli_score_and_mine(trained_run):
    result = runner.invoke(app, ["score", str(trained_run)])
    assert result.exit_code == 0, result.output
    r0 = trained_run / "round-000"
    scores = pd.read_csv(r0 / "scores.csv")
    split = pd.read_csv(trained_run / "split.csv")
    assert len(scores) == (split.split == "train").sum()
    assert set(SCORE_COLUMNS) | {"confidence", "variability", "forgetting", "dynamics"} <= set(scores.columns)
    emb = np.load(r0 / "embeddings.npy")
    assert emb.shape[0] == len(scores) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    assert (trained_run / "split_audit.csv").exists() and "split audit" in result.output
    if importlib.util.find_spec("pyarrow"):  # the parquet extra (in dev): the same table in row groups
        assert pd.read_parquet(r0 / "scores.parquet").equals(pd.read_csv(r0 / "scores.csv"))
    result = runner.invoke(app, ["mine", str(trained_run), "--k", "5"])
    assert result.exit_code == 0, result.output
    mined = pd.read_csv(r0 / "mined.csv")
    weights = pd.read_csv(r0 / "weights.csv")
    assert list(weights.columns) == ["id", "weight"] and len(weights) == len(scores)
    assert weights["weight"].mean() == pytest.approx(1.0)
    assert set(mined["role"]) <= {"seed", "neighbour", "quarantined"} and len(mined) > 0
    summary = json.loads((r0 / "mining.json").read_text())
    assert summary["n_seeds"] == (mined.role == "seed").sum()
    # each step records what it ran with: the options given to `mine`, the run's costs, the scoring settings
    assert (summary["settings"]["k"], summary["settings"]["triage_k"]) == (5, 10)
    assert summary["costs"] == {"cost_fn": 10.0, "cost_fp": 1.0}
    scoring = json.loads((r0 / "scoring.json").read_text())
    assert scoring["scoring"]["source"] == "insample" and scoring["evidence"] == {"gathered": True, "triage_k": 10,
                                                                                  "seed": 0}  # fmt: skip
    result = runner.invoke(app, ["mine", str(trained_run), "--k", "5", "--triage-k", "3"])
    assert result.exit_code == 0, result.output
    assert summary["evidence"] == "scores"  # gathered once, when scoring
    resummary = json.loads((r0 / "mining.json").read_text())  # another vote than scored: gathered again, recorded
    assert resummary["settings"]["triage_k"] == 3 and resummary["evidence"] == "gathered at mining (triage_k=3)"
    result = runner.invoke(app, ["mine", str(trained_run), "--k", "100000"])
    assert result.exit_code == 2 and "k=100000" in result.output


def test_cli_score_out_of_fold(trained_run):
    for source in (["--scores", "oof"], ["--triage", "networks"]):  # both train networks out of fold
        result = runner.invoke(app, ["score", str(trained_run), *source, "--oof", "1"])
        assert result.exit_code == 2 and "--oof needs at least 2 folds; got 1" in result.output
    result = runner.invoke(app, ["score", str(trained_run), "--scores", "oof", "--oof", "2", "--oof-epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "out-of-fold model 2/2\n" in result.output
    scores = pd.read_csv(trained_run / "round-000" / "scores.csv")
    assert scores["prob_pos_oof"].between(0, 1).all()
    # out-of-fold probabilities are not the in-sample ones
    assert not np.allclose(scores["prob_pos_oof"], scores["prob_pos"])
    for fold in (0, 1):  # --oof-epochs sets the fold networks' length
        assert (trained_run / "round-000" / "oof" / f"fold-{fold}" / "history.jsonl").read_text().count("\n") == 1
    # the fold networks (oversampled: already at the balanced prior) are the triage's evidence, and alone the suspicion
    p, y = scores["prob_pos_oof"].to_numpy(), scores["label"].to_numpy()
    assert "suspicion_oof" not in scores  # no out-of-fold head was fitted
    assert np.allclose(scores["suspicion_networks"], np.where(y == 1, 1 - p, p), atol=1e-6)
    assert np.allclose(scores["suspicion"], scores["suspicion_networks"])
    result = runner.invoke(app, ["mine", str(trained_run), "--scores", "oof", "--k", "5"])
    assert result.exit_code == 0, result.output
    mined = pd.read_csv(trained_run / "round-000" / "mined.csv", dtype={"id": str})
    quarantined = set(mined.loc[mined["role"] == "quarantined", "id"])
    assert quarantined == set(scores.loc[scores["suspicion"] >= 0.8, "id"].astype(str))  # the networks' rule
    # scoring again reuses the trained fold networks; other settings retrain them from scratch
    fold = trained_run / "round-000" / "oof" / "fold-0"
    trained = (fold / "last.pt").stat().st_mtime_ns
    result = runner.invoke(app, ["score", str(trained_run), "--scores", "oof", "--oof", "2", "--oof-epochs", "1"])
    assert result.exit_code == 0, result.output
    assert (fold / "last.pt").stat().st_mtime_ns == trained
    assert "out-of-fold model 2/2: trained before, reused" in result.output
    assert np.allclose(pd.read_csv(trained_run / "round-000" / "scores.csv")["prob_pos_oof"], p)
    # options that change nothing about the results (a resume with other --threads, --precision) reuse them too
    from dataclasses import replace

    from hardmine.engine.folds import out_of_fold_logits
    from hardmine.run.opened import Run

    run = Run.open(trained_run)
    runtime = replace(run.config.train, epochs=1, threads=1, precision="fp32", num_workers=0, device="cpu")
    out_of_fold_logits(run.part("train"), runtime, 2, run.oof_dir(), seed=run.config.train.seed)
    assert (fold / "last.pt").stat().st_mtime_ns == trained
    (fold / "left-by-the-1-epoch-networks").write_text("")
    result = runner.invoke(app, ["score", str(trained_run), "--scores", "oof", "--oof", "2", "--oof-epochs", "2"])
    assert result.exit_code == 0, result.output
    assert not (fold / "left-by-the-1-epoch-networks").exists()  # cleared: a fresh 2-epoch schedule, not resumed
    assert (fold / "history.jsonl").read_text().count("\n") == 2
    assert json.loads((fold.parent / "settings.json").read_text())["train"]["epochs"] == 2


def test_streamed_float16_embeddings_equal_in_memory(trained_run, demo_dir):
    """Embeddings streamed through a memory map equal the in-memory path."""
    from hardmine.engine.datasets import ImageDataset
    from hardmine.engine.scoring import score_dataset
    from hardmine.run.opened import Run

    run = Run.open(trained_run)
    model = Engine(run.config.train).load_model(trained_run / "round-000" / "model.pt")
    part = run.part("train")
    ds = ImageDataset(part, run.config.train.image_size)
    table_a, emb_a, center_a = score_dataset(model, ds, part["id"])
    path = trained_run / "streamed.npy"
    table_b, emb_b, center_b = score_dataset(model, ds, part["id"], embeddings_path=path, embedding_dtype="float16")
    assert isinstance(emb_b, np.memmap) and emb_b.dtype == np.float16
    assert np.allclose(emb_a, emb_b, atol=2e-3) and np.allclose(center_a, center_b, atol=1e-5)
    assert table_a.equals(table_b)
    assert not (trained_run / "streamed.raw.npy").exists()
    result = runner.invoke(app, ["score", str(trained_run), "--float16"])
    assert result.exit_code == 0, result.output
    assert np.load(trained_run / "round-000" / "embeddings.npy").dtype == np.float16
