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
TRAIN_ARGS = ["--image-size", "24", "--epochs", "2", "--device", "cpu", "--batch-size", "32"]


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
    result = runner.invoke(app, ["train", "--data", str(demo_dir), "--out", str(run), *TRAIN_ARGS])
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


def test_two_process_round_completes_with_the_same_files(demo_dir, tmp_path):
    run = tmp_path / "run"
    result = torchrun("round", "--data", str(demo_dir), "--out", str(run), "--rounds", "1", "--round-epochs", "1",
                      "--k", "5", *TRAIN_ARGS)  # fmt: skip
    assert result.stdout.count("test split") == 1  # rank 0 alone prints
    for name in ("config.json", "split.csv", "manifest.json", "report.json", "report.html"):
        assert (run / name).exists(), name
    for r in (0, 1):
        for name in ("model.pt", "metrics.json", "scores.csv", "embeddings.npy", "mined.csv", "weights.csv"):
            assert (run / f"round-{r:03d}" / name).exists(), (r, name)
    report = json.loads((run / "report.json").read_text())
    assert [row["round"] for row in report["rounds"]] == [0, 1]
    assert 0.0 <= report["test"]["auroc"] <= 1.0
    history = [json.loads(line) for line in (run / "round-000" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2
