"""torchrun with 2 CPU processes (gloo) against a single process."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hardmine.cli import app

runner = CliRunner()
TRAIN_ARGS = ["--model", "tiny", "--image-size", "24", "--epochs", "2", "--device", "cpu", "--batch-size", "32"]


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "hardmine", *args]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def trained(demo_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("dist") / "run"
    # round 0 only, made by `round` so that its configuration has the finetune rounds the round test adds
    result = runner.invoke(app, ["round", "--data", str(demo_dir), "--out", str(run), "--n", "0",
                                 "--strategy", "finetune", *TRAIN_ARGS])  # fmt: skip
    assert result.exit_code == 0, result.output
    return run


def test_two_process_scoring_equals_single_process(trained, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    assert runner.invoke(app, ["score", str(trained)]).exit_code == 0
    torchrun("score", str(copy))
    single = pd.read_csv(trained / "round-000" / "scores.csv")
    double = pd.read_csv(copy / "round-000" / "scores.csv")
    assert list(single["id"]) == list(double["id"])  # one row per sample, original order
    assert np.allclose(single["prob_pos"], double["prob_pos"], atol=1e-5)
    assert np.allclose(single["loss"], double["loss"], atol=1e-4)
    a = np.load(trained / "round-000" / "embeddings.npy")
    b = np.load(copy / "round-000" / "embeddings.npy")
    assert a.shape == b.shape and np.allclose(a, b, atol=1e-4)


def test_two_process_round_equals_single_process_where_it_must(trained, tmp_path):
    """From the same round 0, a torchrun round scores and mines round 0 exactly as one process does;
    round 1's training is data-parallel (other batch statistics), so only its shape is compared."""
    single, double = tmp_path / "single", tmp_path / "double"
    shutil.copytree(trained, single)
    shutil.copytree(trained, double)
    config = json.loads((trained / "config.json").read_text())
    data_args = ["--data", config["data"]["data"], "--out"]
    finetune = ["--strategy", "finetune"]  # rounds that train (data-parallel), and so an equal-epochs reference
    result = runner.invoke(app, ["round", *data_args, str(single), "--n", "1", *finetune, *TRAIN_ARGS])
    assert result.exit_code == 0, result.output
    printed = torchrun("round", *data_args, str(double), "--rounds", "1", *finetune, *TRAIN_ARGS)
    assert printed.stdout.count("test split") == 1  # rank 0 alone prints
    a, b = (json.loads((run / "report.json").read_text()) for run in (single, double))
    assert a["rounds"][0]["val"] == b["rounds"][0]["val"] and a["test_round0"] == b["test_round0"]
    assert [row["round"] for row in b["rounds"]] == [0, 1]
    sizes = [{k: report["rounds"][1]["val"][k] for k in ("n", "n_pos")} for report in (a, b)]
    assert sizes[0] == sizes[1]
    mined_a, mined_b = (pd.read_csv(run / "round-000" / "mined.csv") for run in (single, double))
    assert list(mined_a["id"]) == list(mined_b["id"]) and list(mined_a["role"]) == list(mined_b["role"])
    assert np.allclose(mined_a["weight"], mined_b["weight"], atol=1e-4)
    manifests = [json.loads((run / "manifest.json").read_text()) for run in (single, double)]
    assert manifests[0]["steps"] == manifests[1]["steps"]
    for name in ("report.html", "round-001/model.pt", "round-001/mined.csv", "round-001/gallery/index.html"):
        assert (double / name).exists(), name
    history = [json.loads(line) for line in (double / "round-001" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1  # --round-epochs defaults to a quarter of --epochs, at least 1
    # the equal-epochs reference (2 + 1 epochs) is trained data-parallel too, once, and its manifest is whole
    reference = double / "reference"
    assert (reference / "round-000" / "history.jsonl").read_text().count("\n") == 3
    assert json.loads((reference / "manifest.json").read_text())["steps"] == ["r000:train"]
    assert b["reference"]["epochs"] == a["reference"]["epochs"] == 3 and b["returned"] in ("round", "reference")


def test_two_process_networks_triage_trains_the_fold_networks_once(trained, tmp_path):
    """``--triage networks`` under torchrun: rank 0 claims the fold folder, the folds train data-parallel,
    and a second scoring reuses them."""
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    args = ["score", str(copy), "--triage", "networks", "--oof", "2", "--oof-epochs", "1"]
    torchrun(*args)
    scores = pd.read_csv(copy / "round-000" / "scores.csv")
    assert scores["prob_pos_oof"].between(0, 1).all() and "suspicion_networks" in scores
    folds = copy / "round-000" / "oof"
    settings = json.loads((folds / "settings.json").read_text())
    assert (settings["folds"], settings["train"]["epochs"]) == (2, 1)
    trained_at = [(folds / f"fold-{k}" / "last.pt").stat().st_mtime_ns for k in (0, 1)]
    torchrun(*args)
    assert [(folds / f"fold-{k}" / "last.pt").stat().st_mtime_ns for k in (0, 1)] == trained_at
    assert np.allclose(pd.read_csv(copy / "round-000" / "scores.csv")["prob_pos_oof"], scores["prob_pos_oof"])
