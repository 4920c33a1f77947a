"""The active-learning loop end to end: round with a pool, the labeling page, label, the next round."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import download_csv
from test_gallery import browser_test, served
from typer.testing import CliRunner

from hardmine.cli import app
from hardmine.data.answers import answers_folder
from hardmine.run.label import read_answers_csv
from hardmine.run.opened import Run

runner = CliRunner()
TRAIN = ["--image-size", "32", "--epochs", "2", "--model", "tiny", "--batch-size", "32"]


@pytest.fixture(scope="module")
def queried(tmp_path_factory) -> Path:
    """Demo data with an unlabeled pool, a round-0 run on it and its first query of 16 images."""
    root = tmp_path_factory.mktemp("active")
    result = runner.invoke(app, ["demo-data", str(root / "demo"), "--images", "300", "--size", "32", "--pool", "160"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["round", "--data", str(root / "demo"), "--out", str(root / "run"), "--n", "0",
                                 "--pool", str(root / "demo-pool" / "pool.csv"), "--budget", "16", *TRAIN])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "16 of" not in result.output and "to label" in result.output
    return root


@pytest.fixture
def loop(queried, tmp_path) -> Path:
    """A private copy of ``queried`` (data, pool and run) that a test may change."""
    for name in ("demo", "demo-pool", "run"):
        shutil.copytree(queried / name, tmp_path / name)
    for name in ("query.csv", "query.json", "queries/001/query.csv", "queries/001/query.json", "samples.csv",
                 "config.json"):  # the copy names its own files  # fmt: skip
        path = tmp_path / "run" / name
        path.write_text(path.read_text().replace(str(queried), str(tmp_path)))
    from hardmine.record.manifest import Manifest

    Manifest(tmp_path / "run").rerecord_run_files()
    return tmp_path


def _truth(root: Path) -> dict[str, str]:
    pool = pd.read_csv(root / "demo-pool" / "pool.csv", dtype=str)
    return dict(zip(pool["id"], pool["dx"], strict=True))


def _answers(root: Path, unsure: int = 1) -> pd.DataFrame:
    """The true class of each queried image (the first ``unsure`` answered unsure)."""
    query = pd.read_csv(root / "run" / "query.csv", dtype=str)
    answers = pd.DataFrame({"image_id": query["id"], "label": query["id"].map(_truth(root))})
    answers.loc[: unsure - 1, "label"] = "unsure"
    return answers


def test_query_lesions_whole_with_reasons_and_neighbours(queried):
    query = pd.read_csv(queried / "run" / "query.csv", dtype=str, keep_default_na=False)
    pool = pd.read_csv(queried / "demo-pool" / "pool.csv", dtype=str)
    assert 12 <= len(query) <= 16 and query["reason"].str.len().gt(0).all()
    for lesion in set(query["group"]):
        assert set(pool.loc[pool["group"] == lesion, "id"]) <= set(query["id"])
    samples = pd.read_csv(queried / "run" / "samples.csv", dtype=str)
    split = pd.read_csv(queried / "run" / "split.csv", dtype=str)
    train = set(split.loc[split["split"] == "train", "id"])
    neighbours = [n for row in query["neighbours"] for n in row.split("|")]
    assert len(neighbours) == 4 * len(query) and set(neighbours) <= train <= set(samples["id"])
    assert (queried / "run" / "label" / "index.html").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.assign(label=["bcc", *a["label"][1:]]),
         "line 2: label 'bcc' for .* is not valid; expected one of mel, nv, unsure"),
        (lambda a: pd.concat([a, a.iloc[[3]]]), "is answered twice \\(also on line 5\\)"),
        (lambda a: a.assign(image_id=[*a["image_id"][:2], "ISIC_9999999", *a["image_id"][3:]]),
         "line 4: image id 'ISIC_9999999' is not in any query of the run"),
        (lambda a: a.rename(columns={"label": "dx"}),
         "expected columns image_id \\(or id\\) and label \\(or answer\\)"),
        (lambda a: a.iloc[:0], "holds no answers"),
    ],
)  # fmt: skip
def test_label_refuses_bad_answers_naming_the_row_and_writes_nothing(loop, change, message):
    bad = loop / "bad.csv"
    change(_answers(loop)).to_csv(bad, index=False)
    before = (loop / "run" / "samples.csv").read_bytes()
    result = runner.invoke(app, ["label", str(loop / "run"), str(bad)])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert re.search(message, result.output), result.output
    assert not answers_folder(loop / "demo").exists() and (loop / "run" / "samples.csv").read_bytes() == before


def test_label_refuses_a_lesion_answered_with_both_classes(loop):
    query = pd.read_csv(loop / "run" / "query.csv", dtype=str)
    lesion = query["group"][query["group"].duplicated()].iloc[0]
    answers = _answers(loop, unsure=0)
    members = query.index[query["group"] == lesion]
    answers.loc[members, "label"] = ["mel", "nv", *["nv"] * (len(members) - 2)]
    answers.to_csv(loop / "bad.csv", index=False)
    result = runner.invoke(app, ["label", str(loop / "run"), str(loop / "bad.csv")])
    assert result.exit_code == 2 and f"lesion {lesion!r} is answered with both classes" in result.output


def test_label_then_round_trains_on_the_answers_and_never_asks_again(loop):
    run_dir, data = loop / "run", loop / "demo"
    before = Run.open(run_dir)
    held_out = before.table.loc[before.split != "train", "id"].tolist()
    metadata_before = (data / "HAM10000_metadata.csv").read_bytes()
    answers = _answers(loop)
    answers.to_csv(loop / "answers.csv", index=False)
    result = runner.invoke(app, ["label", str(run_dir), str(loop / "answers.csv")])
    assert result.exit_code == 0, result.output
    kept = pd.read_csv(data / "hardmine-answers" / "manifest.csv", dtype=str, keep_default_na=False)
    assert kept["image_id"].tolist() == answers["image_id"].tolist()
    assert (kept["answer"] == answers["label"]).all() and kept["path"].iloc[0] == ""  # unsure: not copied
    for row in kept.iloc[1:].itertuples():
        assert (data / "hardmine-answers" / row.path).is_file()  # copied inside the data root
    assert (data / "HAM10000_metadata.csv").read_bytes() == metadata_before  # nothing of the user's touched
    run = Run.open(run_dir)
    added = run.table.set_index("id").loc[answers["image_id"][1:]]
    assert (added["label"] == (answers["label"][1:] == "mel").astype(int).to_numpy()).all()
    assert set(run.split[run.table["id"].isin(answers["image_id"])]) == {"train"}
    assert run.table.loc[run.split != "train", "id"].tolist() == held_out  # val and test as they were
    again = runner.invoke(app, ["label", str(run_dir), str(loop / "answers.csv")])  # idempotent
    assert again.exit_code == 0 and "0 image(s) joined" in again.output
    # the same command as the first (--n 0): with new labels it trains one more round on them
    result = runner.invoke(app, ["round", "--data", str(data), "--out", str(run_dir), "--n", "0",
                                 "--pool", str(loop / "demo-pool" / "pool.csv"), "--budget", "16", *TRAIN])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "(16 answered before, not asked again)" not in result.output  # round's query does not print it
    second = pd.read_csv(run_dir / "query.csv", dtype=str)
    assert not set(second["id"]) & set(answers["image_id"])  # answered (unsure too) never asked again
    scores = pd.read_csv(run_dir / "round-001" / "scores.csv", dtype=str)
    assert set(answers["image_id"][1:]) <= set(scores["id"])  # round 1 trained and mined with the answers


def test_oracle_rounds_answer_whole_lesions_and_grow_the_training_split(loop):
    data = loop / "demo"
    result = runner.invoke(app, ["round", "--data", str(data), "--out", str(loop / "oracle"), "--n", "2",
                                 "--pool", str(loop / "demo-pool" / "pool.csv"), "--budget", "10", "--oracle", "dx",
                                 "--oracle-error", "0.2", *TRAIN])  # fmt: skip
    assert result.exit_code == 0, result.output
    kept = pd.read_csv(data / "hardmine-answers" / "manifest.csv", dtype=str, keep_default_na=False)
    assert 16 <= len(kept) <= 20 and kept.groupby("group")["answer"].nunique().max() == 1
    from hardmine.run.active import oracle_answers

    run = Run.open(loop / "oracle")
    pool = pd.read_csv(loop / "demo-pool" / "pool.csv", dtype=str)
    said = oracle_answers(loop / "demo-pool" / "pool.csv", "dx", run, 0.2)
    assert (kept["answer"].to_numpy() == said[kept["image_id"]].to_numpy()).all()  # the loop kept what it was told
    # the oracle errs on about a fifth of the pool's lesions, a whole lesion at a time
    wrong = pd.Series(said[pool["id"]].to_numpy() != pool["dx"].to_numpy()).groupby(pool["group"].to_numpy())
    assert (wrong.nunique() == 1).all() and 0.1 <= wrong.first().mean() <= 0.3, wrong.first().mean()
    assert set(kept["image_id"]) <= set(run.table.loc[run.split == "train", "id"])
    result = runner.invoke(app, ["round", "--data", str(data), "--out", str(loop / "x"), "--oracle", "dx", *TRAIN])
    assert result.exit_code == 2 and "--oracle applies to queries of a pool: give --pool too" in result.output


def test_pool_image_already_labeled_is_refused_by_name(loop):
    run = Run.open(loop / "run")
    labeled = run.table.iloc[0]
    pool = pd.read_csv(loop / "demo-pool" / "pool.csv", dtype=str)
    pool.loc[0, "id"] = labeled["id"]
    pool.to_csv(loop / "demo-pool" / "pool.csv", index=False)
    result = runner.invoke(app, ["query", str(loop / "run"), "--pool", str(loop / "demo-pool" / "pool.csv"),
                                 "--budget", "5"])  # fmt: skip
    assert result.exit_code == 2 and f"{labeled['id']} (" in result.output
    assert "already in the labeled data" in result.output


@browser_test
def test_browser_labeling_answers_a_whole_lesion_with_one_key_and_label_reads_the_download(queried, browser):
    from selenium.webdriver.common.by import By

    run_dir = queried / "run"
    query = pd.read_csv(run_dir / "query.csv", dtype=str)
    groups = query["group"].tolist()
    with served(run_dir) as base:
        browser.get(f"{base}/label/index.html")
        cards = browser.find_elements(By.CSS_SELECTOR, ".card")
        ids = [c.get_attribute("data-id") for c in cards]
        assert ids == query["id"].tolist()
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
        assert not cards[0].find_element(By.CSS_SELECTOR, ".model").is_displayed()  # no anchoring before an answer
        from selenium.webdriver.common.keys import Keys

        body = browser.find_element(By.TAG_NAME, "body")
        multi = next(i for i, g in enumerate(groups) if groups.count(g) > 1)  # the first lesion of several images
        for _ in range(multi):
            body.send_keys(Keys.ARROW_RIGHT)
        body.send_keys("m")  # mel for that whole lesion; on to the next lesion's first card
        after = next(i for i in range(multi, len(groups)) if groups[i] != groups[multi])
        body.send_keys("n")  # nv for that lesion, all of its cards
        expected = {i: "mel" for i, g in zip(ids, groups, strict=True) if g == groups[multi]}
        expected |= {i: "nv" for i, g in zip(ids, groups, strict=True) if g == groups[after]}
        assert len(expected) >= 3 and browser.find_element(By.ID, "count").text == str(len(expected))
        assert cards[multi].find_element(By.CSS_SELECTOR, ".model").is_displayed()  # answered: the model's view
        browser.refresh()
        browser.find_element(By.CSS_SELECTOR, ".card")
        body = browser.find_element(By.TAG_NAME, "body")
        assert browser.find_element(By.ID, "count").text == str(len(expected))
        image = browser.find_element(By.CSS_SELECTOR, ".card img.large")
        browser.execute_script("arguments[0].click()", image)  # the zoom shows the original
        assert browser.find_element(By.ID, "zoom").is_displayed()
        assert browser.find_element(By.ID, "zoom-img").get_attribute("naturalWidth") != "0"
        body.send_keys(Keys.ESCAPE)
        assert not browser.find_element(By.ID, "zoom").is_displayed()
        rows = download_csv(browser, "answers.csv")
    assert {r["image_id"]: r["label"] for r in rows} == expected
    read = read_answers_csv(browser.download_dir / "answers.csv", Run.open(run_dir))  # what `hardmine label` reads
    assert dict(zip(read["image_id"], read["answer"], strict=True)) == expected


def test_pool_images_of_a_held_out_lesion_are_left_out_with_a_warning(loop):
    run = Run.open(loop / "run")
    held_out_lesion = run.table.loc[run.split == "test", "group"].iloc[0]
    pool = pd.read_csv(loop / "demo-pool" / "pool.csv", dtype=str)
    asked = set(pd.read_csv(loop / "run" / "query.csv", dtype=str)["id"])  # the open batch: left out anyway
    row = pool.index[~pool["id"].isin(asked)][0]
    pool.loc[row, "group"] = held_out_lesion  # another image of a test lesion, unlabeled
    pool.to_csv(loop / "demo-pool" / "pool.csv", index=False)
    result = runner.invoke(app, ["query", str(loop / "run"), "--pool", str(loop / "demo-pool" / "pool.csv"),
                                 "--budget", "40", "--method", "random"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 pool image(s) belong to lesions in the run's validation or test split" in result.output
    assert pool.loc[row, "id"] not in set(pd.read_csv(loop / "run" / "query.csv", dtype=str)["id"])


def test_an_answer_id_never_names_a_place_outside_the_answers_folder(demo_dir, tmp_path):
    from hardmine.core.errors import DataError
    from hardmine.data.answers import record_answers

    image = next(demo_dir.glob("HAM10000_images_part_1/*.jpg"))
    hostile = pd.DataFrame({"image_id": ["../../escaped"], "source_path": [str(image)], "answer": ["mel"],
                            "group": ["g"]})  # fmt: skip
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match="would be kept outside"):
        record_answers(tmp_path / "data", hostile, "run")
    assert not list(tmp_path.rglob("escaped*"))


def _record_slowly(data: str, ids: list[str], image: str, run: str, start: float) -> None:
    """In another process: record answers to ``ids`` beside ``data``, reading the store slowly (a wide window
    for another writer between this one's read and its write)."""
    import time

    from hardmine.data import answers as store

    read = store._stored

    def slow(manifest):
        frame = read(manifest)
        time.sleep(0.5)
        return frame

    store._stored = slow
    time.sleep(max(0.0, start - time.time()))
    frame = pd.DataFrame({"image_id": ids, "source_path": [image] * len(ids), "answer": ["nv"] * len(ids),
                          "group": ids})  # fmt: skip
    store.record_answers(data, frame, run)


def test_two_labels_on_one_data_folder_at_once_keep_every_answer(demo_dir, tmp_path):
    import multiprocessing
    import time

    from hardmine.data.answers import read_answers

    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    image = str(next(data.rglob("*.jpg")))
    start = time.time() + 1.0  # both read the empty store within one window
    spawn = multiprocessing.get_context("spawn")
    writers = [spawn.Process(target=_record_slowly, args=(str(data), [f"{run}_{i}" for i in range(3)], image, run,
                                                           start)) for run in ("runA", "runB")]  # fmt: skip
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    kept = read_answers(data)
    assert sorted(kept["image_id"]) == sorted(f"{run}_{i}" for run in ("runA", "runB") for i in range(3))


def test_answers_one_run_added_are_not_a_changed_data_set_for_another_run(loop):
    args = ["round", "--data", str(loop / "demo"), "--out", str(loop / "other"), "--n", "0", *TRAIN]
    assert runner.invoke(app, args).exit_code == 0
    samples = (loop / "other" / "samples.csv").read_bytes()
    _answers(loop).to_csv(loop / "answers.csv", index=False)
    assert runner.invoke(app, ["label", str(loop / "run"), str(loop / "answers.csv")]).exit_code == 0
    result = runner.invoke(app, args)  # the other run goes on: run's answers are not its data changing
    assert result.exit_code == 0 and "fingerprint differs" not in result.output, result.output
    assert (loop / "other" / "samples.csv").read_bytes() == samples


class _Kill(Exception):
    pass


@pytest.mark.parametrize("kill_at", ["a new file", "the journal", "a rename"])
def test_a_kill_inside_labels_run_file_update_leaves_the_run_before_or_after_never_half(loop, kill_at, monkeypatch):
    import os

    from hardmine.core import io
    from hardmine.record import manifest as records
    from hardmine.run.opened import data_fingerprint

    run_dir = loop / "run"
    before = Run.open(run_dir)
    train_before = int((before.split == "train").sum())
    _answers(loop).to_csv(loop / "answers.csv", index=False)
    writes, renames = [], []

    def write_json(path, obj):  # the config's new content, the journal: the run files' writes of label
        writes.append(path.name)
        if (kill_at == "a new file" and path.name.endswith(".new")) or (
                kill_at == "the journal" and path.name == "run-files.journal"):  # fmt: skip
            raise _Kill
        return io.write_json(path, obj)

    real_replace = os.replace

    def replace(source, target):
        if str(source).endswith(".new"):  # the transaction's renames, not the atomic writes' own
            renames.append(target)
        if kill_at == "a rename" and len(renames) == 2:
            raise _Kill  # one run file renamed, two not
        return real_replace(source, target)

    import hardmine.run.label as label

    monkeypatch.setattr(records, "write_json", write_json)
    monkeypatch.setattr(label, "write_json", write_json)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(_Kill):
        from hardmine.run.label import apply_answers

        apply_answers(Run.open(run_dir), loop / "answers.csv")
    monkeypatch.undo()
    assert writes or renames
    run = Run.open(run_dir)  # opens: the update undone (before the journal) or completed (after it)
    assert set(pd.read_csv(run_dir / "split.csv", dtype=str)["id"]) == set(run.table["id"])
    assert json.loads((run_dir / "config.json").read_text())["data_fingerprint"] == data_fingerprint(run.table)
    grown = int((run.split == "train").sum())
    assert grown == (train_before if kill_at != "a rename" else train_before + len(_answers(loop)) - 1)
    assert not list(run_dir.glob("*.new")) and not (run_dir / "run-files.journal").exists()
    result = runner.invoke(app, ["label", str(run_dir), str(loop / "answers.csv")])  # again: the same end
    assert result.exit_code == 0, result.output
    assert int((Run.open(run_dir).split == "train").sum()) == train_before + len(_answers(loop)) - 1


def test_pool_ids_are_normalised_once_and_a_blank_one_is_refused_by_row(demo_dir, tmp_path):
    from hardmine.core.errors import DataError
    from hardmine.data.pool import load_pool

    images = sorted((demo_dir / "HAM10000_images_part_1").glob("*.jpg"))[:3]
    (tmp_path / "pool").mkdir()
    for i, image in enumerate(images):
        shutil.copy(image, tmp_path / "pool" / f"p{i}.jpg")
    frame = pd.DataFrame({"path": ["p0.jpg", "p1.jpg", "p2.jpg"], "id": ["  spaced  ", "'=guarded", "plain"],
                          "group": ["L1", " ", "L1"]})  # fmt: skip
    frame.to_csv(tmp_path / "pool" / "pool.csv", index=False)
    with pytest.warns(UserWarning, match="1 image\\(s\\) without a lesion \\(first: =guarded\\)"):
        pool = load_pool(tmp_path / "pool" / "pool.csv")
    assert pool["id"].tolist() == ["spaced", "=guarded", "plain"]  # as `label` reads the page's download
    assert pool["group"].tolist() == ["L1", "=guarded", "L1"]
    frame.loc[2, "id"] = "   "
    frame.to_csv(tmp_path / "pool" / "pool.csv", index=False)
    with pytest.raises(DataError, match="pool.csv row 4: the image id is blank"):
        load_pool(tmp_path / "pool" / "pool.csv")


def test_label_refuses_an_image_replaced_since_it_was_asked(loop):
    query = pd.read_csv(loop / "run" / "query.csv", dtype=str, keep_default_na=False)
    assert query["sha256"].str.fullmatch("[0-9a-f]{64}").all()
    asked, other = Path(query.loc[1, "path"]), Path(query.loc[2, "path"])
    asked.write_bytes(other.read_bytes())  # the pool file now holds another lesion's picture
    _answers(loop, unsure=0).to_csv(loop / "answers.csv", index=False)
    before = (loop / "run" / "samples.csv").read_bytes()
    result = runner.invoke(app, ["label", str(loop / "run"), str(loop / "answers.csv")])
    assert result.exit_code == 2, result.output
    assert f"({query.loc[1, 'id']}) changed since it was asked" in " ".join(result.output.split())
    assert (loop / "run" / "samples.csv").read_bytes() == before
    assert not (loop / "demo" / "hardmine-answers").exists()  # nothing kept beside the data either


def test_a_folder_pool_refuses_an_image_that_links_outside_it(demo_dir, tmp_path):
    from hardmine.core.errors import DataError
    from hardmine.data.pool import load_pool

    images = sorted((demo_dir / "HAM10000_images_part_1").glob("*.jpg"))[:2]
    (tmp_path / "pool").mkdir()
    shutil.copy(images[0], tmp_path / "pool" / "inside.jpg")
    assert load_pool(tmp_path / "pool")["id"].tolist() == ["inside"]
    (tmp_path / "pool" / "secret.jpg").symlink_to(images[1])  # an image elsewhere, through a link
    with pytest.raises(DataError, match="secret.jpg links to .* outside the pool folder"):
        load_pool(tmp_path / "pool")


def test_label_refuses_an_answer_against_a_lesion_the_run_already_holds(loop):
    run = Run.open(loop / "run")
    train = run.table[(run.split == "train").to_numpy()]
    query = pd.read_csv(loop / "run" / "queries" / "001" / "query.csv", dtype=str, keep_default_na=False)
    nevus = train[train["label"] == 0].iloc[0]
    query.loc[0, "group"] = nevus["group"]  # a pool image said to be of a training nevus lesion
    for name in ("query.csv", "queries/001/query.csv"):
        query.to_csv(loop / "run" / name, index=False)
    answers = _answers(loop, unsure=0)
    answers.loc[answers["image_id"] == query.loc[0, "id"], "label"] = "mel"
    answers.to_csv(loop / "answers.csv", index=False)
    before = (loop / "run" / "samples.csv").read_bytes()
    result = runner.invoke(app, ["label", str(loop / "run"), str(loop / "answers.csv")])
    assert result.exit_code == 2, result.output
    assert f"lesion {nevus['group']!r} is labeled nv in the run" in " ".join(result.output.split())
    assert (loop / "run" / "samples.csv").read_bytes() == before


def test_attack_label_never_writes_through_a_linked_answers_folder_nor_beside_moved_data(loop, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (loop / "demo" / "hardmine-answers").symlink_to(elsewhere, target_is_directory=True)
    _answers(loop).to_csv(loop / "answers.csv", index=False)
    result = runner.invoke(app, ["label", str(loop / "run"), str(loop / "answers.csv")])
    assert result.exit_code == 2 and "is a link out of the data folder" in result.output
    assert list(elsewhere.iterdir()) == []
    (loop / "demo" / "hardmine-answers").unlink()
    (loop / "demo").rename(loop / "moved")
    result = runner.invoke(app, ["label", str(loop / "run"), str(loop / "answers.csv")])
    assert result.exit_code == 2 and "is not there (moved or deleted?)" in " ".join(result.output.split())
    assert not (loop / "hardmine-answers").exists()  # nothing written into the parent folder
