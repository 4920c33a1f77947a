"""`hardmine predict`: the best round's probabilities and decisions for new images."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hardmine.cli import app
from hardmine.core.errors import DataError
from hardmine.data.images import image_inputs

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict") / "run"
    args = ["round", "--data", str(demo_dir), "--model", "tiny",
            "--out", str(out), "--n", "1", "--epochs", "2", "--image-size", "24",
            "--device", "cpu", "--workers", "0", "--strategy", "finetune"]  # fmt: skip (with an equal-epochs reference)
    assert runner.invoke(app, args).exit_code == 0
    return out


@pytest.mark.parametrize("chosen", ["best", "reference"])
def test_predict_reproduces_the_returned_models_test_predictions(run_dir, tmp_path, chosen):
    report = json.loads((run_dir / "report.json").read_text())
    # the model the run hands back: the best round, or the equal-epochs reference when no round beat it
    folder, label = (run_dir, report["best_round"])
    if chosen == "reference" or report["returned"] == "reference":
        folder, label = run_dir / "reference", "reference"
    model_dir = folder / f"round-{0 if label == 'reference' else label:03d}"
    expected = pd.read_csv(model_dir / "preds_test.csv", dtype={"id": str})
    samples = pd.read_csv(run_dir / "samples.csv", dtype={"id": str}).set_index("id")
    pd.DataFrame({"path": samples.loc[expected["id"], "path"].to_numpy()}).to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "predictions.csv"
    result = runner.invoke(app, ["predict", str(run_dir), str(tmp_path / "new.csv"), "--out", str(out),
                                 "--round", chosen])  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    threshold = json.loads((model_dir / "metrics.json").read_text())["threshold"]
    assert (table["round"].astype(str) == str(label)).all() and np.allclose(table["threshold"], threshold)
    assert np.allclose(table["prob_pos"], expected["prob_pos"], atol=1e-5)
    assert (table["prediction"] == np.where(table["prob_pos"] >= threshold, "mel", "nv")).all()
    zero = runner.invoke(app, ["predict", str(run_dir), str(tmp_path / "new.csv"), "--round", "0",
                               "--out", str(tmp_path / "r0.csv")])  # fmt: skip
    assert zero.exit_code == 0 and (pd.read_csv(tmp_path / "r0.csv")["round"] == 0).all()


def test_image_inputs_from_files_folders_and_csvs(demo_dir, tmp_path):
    folder = demo_dir / "HAM10000_images_part_1"
    images = sorted(str(p) for p in folder.glob("*.jpg"))
    assert image_inputs([folder]) == images
    assert image_inputs([images[0], folder]) == [images[0], *images]
    (tmp_path / "x.csv").write_text("path\n../escape.jpg\n")
    with pytest.raises(DataError, match="row 2: path '../escape.jpg' resolves outside"):
        image_inputs([tmp_path / "x.csv"])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt is not an image"):
        image_inputs([tmp_path / "notes.txt"])
    with pytest.raises(DataError, match="no images"):
        image_inputs([tmp_path])
    result = runner.invoke(app, ["predict", str(tmp_path), str(tmp_path / "missing.jpg")])
    assert result.exit_code == 2 and "missing.jpg does not exist" in result.stderr
    result = runner.invoke(app, ["predict", str(tmp_path), str(folder), "--device", "gpu0"])
    assert result.exit_code == 2 and "--device 'gpu0' is not valid" in result.stderr


def test_exports_carry_image_paths_and_reason_lists(run_dir):
    samples = pd.read_csv(run_dir / "samples.csv", dtype={"id": str}).set_index("id")
    scores = pd.read_csv(run_dir / "round-001" / "scores.csv", dtype={"id": str})
    mined = pd.read_csv(run_dir / "round-001" / "mined.csv", dtype={"id": str}, keep_default_na=False)
    for table in (scores, mined):
        assert (table["path"] == samples.loc[table["id"], "path"].to_numpy()).all()
    pytest.importorskip("pyarrow")
    parquet = pd.read_parquet(run_dir / "round-001" / "mined.parquet")
    assert [list(r) for r in parquet["reasons"]] == [r.split("|") for r in mined["reasons"]]


def test_predict_skips_unreadable_images_reads_every_format_and_names_missing_rounds(run_dir, demo_dir, tmp_path):
    from PIL import Image

    folder = tmp_path / "new"
    folder.mkdir()
    source = next((demo_dir / "HAM10000_images_part_1").glob("*.jpg"))
    with Image.open(source) as image:
        for suffix in (".bmp", ".tif", ".png"):
            image.convert("RGB").save(folder / f"lesion{suffix}")
    (folder / "broken.jpg").write_bytes(source.read_bytes()[:200])
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(run_dir), str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, keep_default_na=False).set_index("path")
    assert len(table) == 4 and {p.rsplit(".", 1)[1] for p in table.index} == {"bmp", "tif", "png", "jpg"}
    broken = str(folder / "broken.jpg")
    assert table.loc[broken, "prediction"] == "" and table.loc[broken, "error"]
    readable = table.drop(broken)
    assert (readable["error"] == "").all() and readable["prediction"].isin(["mel", "nv"]).all()
    assert "skipped 1 unreadable image(s)" in result.stderr and "broken.jpg" in result.stderr
    strict = runner.invoke(app, ["predict", str(run_dir), str(folder), "--out", str(tmp_path / "s.csv"), "--strict"])
    assert strict.exit_code == 2 and "1 unreadable image(s), first:" in strict.stderr
    assert not (tmp_path / "s.csv").exists()
    missing = runner.invoke(app, ["predict", str(run_dir), str(folder), "--round", "7", "--out", str(tmp_path / "7")])
    assert missing.exit_code == 2 and "has no round 7; its rounds: 0, 1" in missing.stderr
