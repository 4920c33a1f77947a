"""fastai and Lightning callbacks: the curriculum reaches the training loader; the examples run."""

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hardmine import HardMiner
from hardmine.engine.sampler import CurriculumSampler

ROOT = Path(__file__).resolve().parents[1]


def _data(n=120):
    torch.manual_seed(0)
    x = torch.randn(n, 6)
    y = (x[:, 0] > 0.8).long()
    return x, y, torch.arange(n)


def _spy_weights(miner: HardMiner) -> list[np.ndarray]:
    """The miner's weights after each mining, in order."""
    seen, update = [], miner.update

    def recording(*args, **kwargs):
        result = update(*args, **kwargs)
        seen.append(miner.weights.copy())
        return result

    miner.update = recording
    return seen


def _curriculum_draw(weights, seed, epoch, n):
    reference = CurriculumSampler(weights, num_samples=n, seed=seed, num_replicas=1, rank=0)
    reference.set_epoch(epoch)
    return list(reference)


def test_lightning_callback_feeds_the_curriculum_to_the_training_loader(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from lightning_ddp_job import Module  # the same module the DDP job trains (it records what it drew)

    from hardmine.integrations.lightning import HardMiningCallback

    x, y, idx = _data()
    miner = HardMiner(y.numpy(), k=5, seed=1)
    weights = _spy_weights(miner)
    mining = HardMiningCallback(miner, DataLoader(TensorDataset(x, y), batch_size=64), every_n_epochs=1)
    module = Module(str(tmp_path))
    trainer = pl.Trainer(max_epochs=3, callbacks=[mining], accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, DataLoader(TensorDataset(x, y, idx), sampler=miner.sampler(), batch_size=32))
    assert [row["epoch"] for row in mining.history] == [1, 2, 3] and miner.round == 3
    assert not np.allclose(weights[0], weights[0].mean())  # the mined curriculum is not uniform
    for epoch in (1, 2):  # every epoch after a mining draws by that mining's weights
        assert module.drawn[epoch] == _curriculum_draw(weights[epoch - 1], 1, epoch, 120)
    # the sampler check before training keeps the draws per epoch the loader was built with
    miner = HardMiner(y.numpy(), k=5, seed=1)
    module = Module(str(tmp_path))
    pl.Trainer(max_epochs=1, callbacks=[HardMiningCallback(miner, DataLoader(TensorDataset(x, y), batch_size=64))],
               accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False).fit(module, DataLoader(TensorDataset(x, y, idx),
                                                                   sampler=miner.sampler(num_samples=48),
                                                                   batch_size=16))  # fmt: skip
    assert len(module.drawn[0]) == 48
    # a loader that ignores the miner's sampler is refused before training
    plain = DataLoader(TensorDataset(x, y, idx), batch_size=32)
    with pytest.raises(ValueError, match="does not draw with miner.sampler"):
        pl.Trainer(max_epochs=1, callbacks=[HardMiningCallback(miner, DataLoader(TensorDataset(x, y)))],
                   accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False).fit(Module(str(tmp_path)), plain)  # fmt: skip


def test_lightning_ddp_ranks_share_the_mined_weights_and_split_the_draws(tmp_path):
    pytest.importorskip("lightning")
    import json
    import subprocess

    result = subprocess.run([sys.executable, str(ROOT / "tests" / "lightning_ddp_job.py"), str(tmp_path)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == 2 and ranks[0]["weights"] == ranks[1]["weights"]  # rank 0 mined, both use it
    assert ranks[0]["weights"]["0"] != ranks[0]["weights"]["2"]  # the curriculum moved after mining
    for epoch in ("0", "1", "2"):
        full = _curriculum_draw(np.array(ranks[0]["weights"][epoch]), 1, int(epoch), 120)
        assert ranks[0]["drawn"][epoch] == full[0::2] and ranks[1]["drawn"][epoch] == full[1::2]


def test_fastai_callback_feeds_the_curriculum_to_the_training_loader():
    pytest.importorskip("fastai")
    import fastai.callback.progress  # noqa: F401 - adds Learner.no_bar
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader as FastaiLoader
    from fastai.learner import Learner
    from fastai.torch_core import Module

    from hardmine.integrations.fastai import HardMiningCallback

    x, y, idx = _data()
    features = torch.cat([x, idx[:, None].float()], dim=1)  # the last column tells the recorder which row it is

    class DropIndex(Module):
        def __init__(self):
            self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))

        def forward(self, xb):
            return self.net(xb[:, :-1])

    from fastai.callback.core import Callback

    class Recorder(Callback):
        order = 70

        def before_fit(self):
            self.drawn = {}

        def before_batch(self):
            if self.training:
                self.drawn.setdefault(self.epoch, []).extend(self.xb[0][:, -1].long().tolist())

    train = TensorDataset(features, y)
    dls = DataLoaders(FastaiLoader(train, bs=32, shuffle=True), FastaiLoader(TensorDataset(features[:40], y[:40]),
                                                                               bs=64), device="cpu")  # fmt: skip
    miner = HardMiner(y.numpy(), k=5, seed=2)
    balanced = miner.weights.copy()
    weights = _spy_weights(miner)
    mining = HardMiningCallback(miner, every=1, score_dl=DataLoader(train, batch_size=64))
    recorder = Recorder()
    learn = Learner(dls, DropIndex(), loss_func=nn.CrossEntropyLoss(), cbs=[mining, recorder])
    with learn.no_bar(), learn.no_logging():
        learn.fit(3, 0.05)
    assert [row["epoch"] for row in mining.history] == [1, 2, 3] and miner.round == 3
    assert recorder.drawn[0] == _curriculum_draw(balanced, 2, 0, 120)  # class-balanced before any mining
    for epoch in (1, 2):
        assert recorder.drawn[epoch] == _curriculum_draw(weights[epoch - 1], 2, epoch, 120)
    assert dls.train.get_idxs.__name__ != "<lambda>"  # fastai's own sampling is back after fit
    # learn.hardmine_rounds: round 0, then n mining rounds of `epochs` epochs each
    again = HardMiner(y.numpy(), k=5, seed=2)
    learn = Learner(dls, DropIndex(), loss_func=nn.CrossEntropyLoss(), cbs=[Recorder()])
    with learn.no_bar(), learn.no_logging():
        rounds = learn.hardmine_rounds(again, n=2, epochs=1, lr=0.05, score_dl=DataLoader(train, batch_size=64))
    assert [row["epoch"] for row in rounds.history] == [1, 2, 3] and again.round == 3


@pytest.mark.parametrize("example", ["fastai_callback", "lightning_callback"])
def test_framework_examples_run(example, demo_dir, monkeypatch, capsys):
    pytest.importorskip("fastai" if example.startswith("fastai") else "lightning")
    monkeypatch.setattr(sys, "argv", [f"{example}.py"])
    module = runpy.run_path(str(ROOT / "examples" / f"{example}.py"))
    mining = module["main"](["--data", str(demo_dir), "--epochs", "2", "--size", "24"])
    assert [row["epoch"] for row in mining.history] == [1, 2] and mining.miner.round == 2
    out = capsys.readouterr().out
    for row in mining.history:  # what the example prints is what its miner found
        assert (f"epoch {row['epoch']}: {row['n_seeds']} seeds, {row['n_neighbours']} neighbours, "
                f"{row['n_quarantined']} quarantined") in out
    assert mining.history[-1]["n_seeds"] > 0 and len(set(np.round(mining.miner.weights, 9))) > 2  # mined, not flat
