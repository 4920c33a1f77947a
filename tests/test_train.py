import json

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
    args = ["train", "--data", str(demo_dir), "--out", str(run), "--image-size", "24", "--epochs", "2",
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
    assert result.exit_code == 2 and "different configuration (train.epochs: 2 then, 3 now)" in result.output


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
