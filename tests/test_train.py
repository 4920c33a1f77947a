import json
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hardmine.cli import app
from hardmine.core.metrics import softmax
from hardmine.core.splits import grouped_split
from hardmine.data.sources import load_samples
from hardmine.engine.datasets import ImageDataset
from hardmine.engine.inference import predict
from hardmine.engine.models import build_model
from hardmine.engine.train import fit
from hardmine.record.config import TrainConfig

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_sets(demo_dir):
    table, _ = load_samples(demo_dir)
    split = grouped_split(table["label"], table["group"], seed=0)
    train = ImageDataset(table[split == "train"], image_size=24, train=True)
    val = ImageDataset(table[split == "val"], image_size=24)
    return train, val


def _config(**kw):
    base = dict(model="tiny", image_size=24, epochs=3, batch_size=32, lr=3e-3, seed=1, device="cpu")
    return TrainConfig(**(base | kw))


class _Kill(Exception):
    pass


def test_fit_writes_history_checkpoints_and_dynamics(tiny_sets, tmp_path):
    train, val = tiny_sets
    events = []
    result = fit(build_model("tiny"), train, val, _config(freeze_epochs=1, loss="focal", sampling="oversample"),
                 tmp_path, callback=lambda e, i: events.append(e))  # fmt: skip
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]  # 1 frozen + 3 unfrozen
    assert history[0]["frozen"] and not history[1]["frozen"]
    assert result.best_epoch == int(np.argmax([h["val"]["auroc"] for h in history]))
    assert events.count("epoch_end") == 4 and "batch" in events
    dyn = np.load(tmp_path / "dynamics.npz")
    assert dyn["loss"].shape == (4, len(train))
    # oversampling draws with replacement: some samples unseen in an epoch stay NaN
    assert np.isfinite(dyn["loss"]).mean() > 0.4
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert "backbone.fc.weight" in state


def test_frozen_epochs_train_only_the_head(tiny_sets, tmp_path):
    train, val = tiny_sets
    model = build_model("tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def kill_after_first_epoch(event, info):
        if event == "epoch_end":
            raise _Kill

    with pytest.raises(_Kill):
        fit(model, train, val, _config(freeze_epochs=1, epochs=1), tmp_path, callback=kill_after_first_epoch)
    after = torch.load(tmp_path / "last.pt", weights_only=True)["model"]
    assert torch.equal(after["backbone.features.0.0.weight"], before["backbone.features.0.0.weight"])
    assert not torch.equal(after["backbone.fc.weight"], before["backbone.fc.weight"])
    fit(model, train, val, _config(freeze_epochs=1, epochs=1), tmp_path)  # resumes into the unfrozen phase
    after = torch.load(tmp_path / "last.pt", weights_only=True)["model"]
    assert not torch.equal(after["backbone.features.0.0.weight"], before["backbone.features.0.0.weight"])


def test_resume_after_kill_equals_uninterrupted(tiny_sets, tmp_path):
    train, val = tiny_sets
    cfg = _config(epochs=3, sampling="oversample")
    fit(build_model("tiny", seed=0), train, val, cfg, tmp_path / "full")

    def kill_after_epoch_1(event, info):
        if event == "epoch_end" and info["epoch"] == 1:
            raise _Kill

    with pytest.raises(_Kill):
        fit(build_model("tiny", seed=0), train, val, cfg, tmp_path / "cut", callback=kill_after_epoch_1)
    events = []

    def record(event, info):
        events.append((event, info))

    fit(build_model("tiny"), train, val, cfg, tmp_path / "cut", callback=record)
    assert events[0] == ("fit_start", {"start_epoch": 2, "total_epochs": 3})
    assert [info["epoch"] for event, info in events if event == "epoch_start"] == [2]
    events.clear()
    fit(build_model("tiny"), train, val, cfg, tmp_path / "full", callback=record)
    assert events == [("fit_start", {"start_epoch": 3, "total_epochs": 3})]  # finished: nothing trains again
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    for key in full:
        assert torch.allclose(full[key].float(), cut[key].float(), atol=1e-6), key
    a = (tmp_path / "full" / "history.jsonl").read_text().splitlines()
    b = (tmp_path / "cut" / "history.jsonl").read_text().splitlines()
    assert len(a) == len(b) == 3
    assert json.loads(a[-1])["val"]["auroc"] == pytest.approx(json.loads(b[-1])["val"]["auroc"])
    assert np.allclose(np.load(tmp_path / "full" / "dynamics.npz")["loss"],
                       np.load(tmp_path / "cut" / "dynamics.npz")["loss"], equal_nan=True, atol=1e-5)  # fmt: skip


def test_sample_weights_through_loss_and_sampler(tiny_sets, tmp_path):
    train, val = tiny_sets
    only_pos = train.labels.astype(float) * 2  # every negative weighs 0
    # apply="sampler": weights are draw probabilities, so no negative is ever drawn (dynamics NaN)
    fit(build_model("tiny"), train, val, _config(epochs=1, apply="sampler", sampling="none"), tmp_path / "s",
        sample_weights=only_pos)  # fmt: skip
    with np.load(tmp_path / "s" / "dynamics.npz") as dyn:
        drawn = np.isfinite(dyn["loss"][0])
    assert not drawn[train.labels == 0].any() and drawn[train.labels == 1].mean() > 0.5
    # apply="loss": every sample is drawn, but only positives carry loss, so the model leans positive
    prob = {}
    for name, weights in (("loss", only_pos), ("plain", None)):
        model = build_model("tiny")
        fit(model, train, val, _config(epochs=1, apply="loss", sampling="none"), tmp_path / name,
            sample_weights=weights)  # fmt: skip
        with np.load(tmp_path / name / "dynamics.npz") as dyn:
            assert np.isfinite(dyn["loss"][0]).all()
        prob[name] = softmax(predict(model, val, num_workers=0)[0])[:, 1].mean()
    assert prob["loss"] > 0.5 > prob["plain"]
    with pytest.raises(ValueError, match="sample_weights has shape \\(3,\\)"):
        fit(build_model("tiny"), train, val, _config(epochs=1), tmp_path / "x", sample_weights=np.ones(3))
    with pytest.raises(ValueError, match="loss='hinge' is not valid"):
        fit(build_model("tiny"), train, val, _config(loss="hinge"), tmp_path / "y")


def test_cli_train_then_evaluate(demo_dir, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(demo_dir), "--model", "tiny",
            "--out", str(run), "--image-size", "24", "--epochs", "2",
            "--loss", "weighted-ce", "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("config.json", "split.csv", "round-000/model.pt", "round-000/metrics.json", "round-000/history.jsonl"):
        assert (run / name).exists(), name
    val = json.loads((run / "round-000/metrics.json").read_text())
    assert val["auroc"] > 0.5 and val["threshold_rule"] == "cost"
    result = runner.invoke(app, ["evaluate", str(run), "--split", "test", "--ci"])
    assert result.exit_code == 0, result.output
    test = json.loads((run / "round-000/metrics_test.json").read_text())
    assert test["threshold"] == val["threshold"]  # tuned on val, never on test
    assert len(test["auroc_ci"]) == 2
    for name in ("roc_test.png", "pr_test.png", "confusion_test.png"):
        assert (run / "round-000" / name).read_bytes()[:4] == b"\x89PNG"
    # the same configuration re-opens; another one is refused without --overwrite
    result = runner.invoke(app, args[:-4] + ["--epochs", "3", "--device", "cpu"])
    assert result.exit_code == 2  # every difference at once
    assert "different configuration (train.epochs: 2 then, 3 now; train.loss: 'weighted-ce' then, 'ce' now)" in (
        result.output)


def test_progress_says_whether_an_out_of_fold_network_trains():
    from rich.console import Console
    from rich.progress import Progress

    from hardmine.cli.printing import ProgressEvents

    bars = Progress(console=Console(record=True, width=200))
    events = ProgressEvents(bars)
    events("step", {"round": 1, "step": "score"})
    for fold, start in enumerate((4, 2, 0)):
        events("fold_start", {"fold": fold, "folds": 3})
        events("fit_start", {"start_epoch": start, "total_epochs": 4})
    events("fit_start", {"start_epoch": 1, "total_epochs": 4})
    lines = bars.console.export_text().splitlines()
    assert lines[1:] == [
        "round 1: out-of-fold model 1/3: trained before, reused",
        "round 1: out-of-fold model 2/3 (resumed at epoch 3/4)",
        "round 1: out-of-fold model 3/3",
        "round 1: training (resumed at epoch 2/4)",
    ]


class _PidLogged(ImageDataset):
    """An image dataset that notes which process loads each sample."""

    log = None

    def __getitem__(self, index):
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return super().__getitem__(index)


def test_loader_workers_start_once_per_fit(tiny_sets, tmp_path):
    train, val = tiny_sets
    _PidLogged.log = tmp_path / "pids.txt"
    logged = [_PidLogged(ds.table, image_size=24, train=ds.train) for ds in (train, val)]
    fit(build_model("tiny"), *logged, _config(epochs=3, num_workers=2, batch_size=8), tmp_path / "run")
    pids = set(_PidLogged.log.read_text().split())
    # 2 training + 2 validation workers for the whole fit; new loaders each epoch started 12
    assert len(pids) == 4 and str(os.getpid()) not in pids


def test_resume_with_workers_equals_uninterrupted_without(tiny_sets, tmp_path):
    """Augmentations are seeded per (epoch, sample): worker processes that live through the fit, or a
    resume that starts new ones, draw what the main process alone draws."""
    train, val = tiny_sets
    fit(build_model("tiny", seed=0), train, val, _config(epochs=2, num_workers=0), tmp_path / "full")

    def kill_after_first_epoch(event, info):
        if event == "epoch_end":
            raise _Kill

    cfg = _config(epochs=2, num_workers=2)
    with pytest.raises(_Kill):
        fit(build_model("tiny", seed=0), train, val, cfg, tmp_path / "cut", callback=kill_after_first_epoch)
    fit(build_model("tiny", seed=0), train, val, cfg, tmp_path / "cut")
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_fp16_trains_through_a_grad_scaler(tiny_sets, tmp_path):
    train, val = tiny_sets
    result = fit(build_model("tiny"), train, val, _config(epochs=2, precision="fp16"), tmp_path)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["scaler"]["scale"] > 0  # the scaler stepped (and its state is in the resume point)
    assert all(np.isfinite(h["train_loss"]) for h in result.history)
    fp32 = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(v.dtype != torch.float16 for v in fp32.values())  # weights stay fp32 under autocast


def test_no_host_sync_per_training_step(tiny_sets, tmp_path, monkeypatch):
    """hardmine's loop waits for the device a fixed number of times per epoch, whatever the number of
    steps (torch's own CPU-side bookkeeping, e.g. AdamW's step counter, is not counted)."""
    import sys

    import hardmine.engine.train as train_module

    train, val = tiny_sets
    counts, inside = [], [False]
    epoch_fn = train_module.train_epoch

    def counted_epoch(*args, **kwargs):
        inside[0] = True
        try:
            return epoch_fn(*args, **kwargs)
        finally:
            inside[0] = False

    for name in ("cpu", "item", "__float__", "numpy", "tolist"):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *a, _original=original, **kw):
            if inside[0] and sys._getframe(1).f_code.co_filename == train_module.__file__:
                counts[-1] += 1
            return _original(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    monkeypatch.setattr(train_module, "train_epoch", counted_epoch)
    for batch_size in (8, 32):
        counts.append(0)
        # images load in worker processes: what is counted here is the training loop's own
        config = _config(epochs=1, batch_size=batch_size, num_workers=1)
        fit(build_model("tiny"), train, val, config, tmp_path / str(batch_size))
    assert counts[0] == counts[1] and counts[0] <= 5, counts


def test_decoded_images_are_kept_and_change_nothing(demo_copy, monkeypatch):
    import hardmine.engine.datasets as datasets

    train = ImageDataset(load_samples(demo_copy)[0].head(20), image_size=24, train=True)
    monkeypatch.setattr(datasets, "DECODED", datasets.DecodedImages())
    decoded = []
    load = datasets.load_image
    monkeypatch.setattr(datasets, "load_image", lambda path, size: decoded.append(path) or load(path, size))

    def items():
        torch.manual_seed(0)
        return torch.stack([train[i][0] for i in range(20)])

    first, second = items(), items()
    assert len(decoded) == 20 and torch.equal(first, second)  # the second pass decoded nothing
    monkeypatch.setenv("HARDMINE_IMAGE_CACHE_MB", "0")
    monkeypatch.setattr(datasets, "DECODED", datasets.DecodedImages())
    assert torch.equal(items(), first) and len(decoded) == 40  # without the cache: decoded again, same tensors
    os.utime(train.paths[0], ns=(0, 10**9))
    monkeypatch.delenv("HARDMINE_IMAGE_CACHE_MB")
    monkeypatch.setattr(datasets, "DECODED", datasets.DecodedImages())
    items()
    os.utime(train.paths[0], ns=(0, 2 * 10**9))  # a changed file is decoded again
    items()
    assert decoded.count(train.paths[0]) == 4


def test_bench_gpu_prints_its_table_on_cpu_in_small_mode(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
    out = subprocess.run([sys.executable, str(bench), "--small", "--out", str(tmp_path), "--device", "cpu"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads((tmp_path / "figures.json").read_text())
    import re

    def rate(row: str) -> float:
        assert f"| {row}" in out.stdout  # the printed table carries the figure too
        return float(re.match(r"(\d+) img/s", figures[row]).group(1))

    # throughputs measured, and related as they must be: a loop that trains cannot outrun its own ceilings
    train_ceiling = min(rate("model ceiling: train steps"), rate("loader ceiling: training (no model)"))
    fit = rate("hardmine fit")
    assert 0 < fit <= 1.5 * train_ceiling and rate("model ceiling: forward") > rate("model ceiling: train steps")
    ratio = float(re.search(r"([\d.]+)x the bare loop", figures["hardmine fit"]).group(1))
    assert ratio == pytest.approx(fit / rate("bare PyTorch loop: fit-like"), rel=0.05)
    parts = [float(v.removesuffix(" s")) for k, v in figures.items() if k.startswith("  round")]
    assert len(parts) >= 6 and sum(parts) <= float(figures["main job: round --n 1, 2 epochs"].removesuffix(" s")) + 1
    assert figures["GPU utilisation during fit"] == "n/a"
