import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hardmine import HardMiner
from hardmine.miner import forward_collect

ROOT = Path(__file__).resolve().parents[1]


def _arrays(n=200, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.2).astype(int)
    probs = np.clip(0.3 * labels + rng.normal(0.35, 0.2, n), 0.01, 0.99)
    emb = rng.normal(size=(n, 8))
    return labels, probs, emb


def test_update_weights_and_sampler_follow():
    labels, probs, emb = _arrays()
    miner = HardMiner(labels, groups=np.arange(200) // 2, k=5)
    sampler = miner.sampler()
    before = sampler.weights.clone()
    result = miner.update(probs=probs, embeddings=emb)
    assert len(result.seeds) > 0 and miner.round == 1
    assert miner.weights.mean() == pytest.approx(1.0)
    assert torch.allclose(sampler.weights, torch.as_tensor(miner.weights))
    assert not torch.allclose(before, sampler.weights)
    assert list(miner.mined().columns) == ["id", "label", "role", "reasons", "hardness", "weight"]
    with pytest.raises(ValueError, match="probs has 10 rows but the miner holds 200 labels"):
        miner.update(probs=probs[:10], embeddings=emb[:10])
    with pytest.raises(ValueError, match="unknown mining option\\(s\\) kk"):
        HardMiner(labels, kk=3)


def test_state_dict_round_trip_resumes_identically(tmp_path):
    labels, probs, emb = _arrays()
    a = HardMiner(labels, k=5, quarantine="both", persistent_rounds=2)
    a.update(probs, emb)
    torch.save(a.state_dict(), tmp_path / "miner.pt")
    b = HardMiner(labels)
    b.load_state_dict(torch.load(tmp_path / "miner.pt", weights_only=True))
    _, probs2, emb2 = _arrays(seed=1)
    ra, rb = a.update(probs2, emb2), b.update(probs2, emb2)
    assert np.array_equal(a.weights, b.weights)
    assert np.array_equal(ra.quarantined, rb.quarantined) and a.round == b.round == 2
    assert list(a.sampler()) == list(b.sampler())


def test_score_with_a_plain_model_and_loader():
    torch.manual_seed(0)
    x = torch.randn(50, 6)
    y = (x[:, 0] > 0.8).long()
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    probs, emb = forward_collect(model, loader, 50)
    assert probs.shape == (50,) and emb.shape == (50, 16)
    expected = torch.softmax(model(x), 1)[:, 1].detach().numpy()
    assert np.allclose(probs, expected, atol=1e-6)
    miner = HardMiner(y.numpy(), k=3)
    miner.score(model, loader)
    assert miner.round == 1
    with pytest.raises(ValueError, match="covered 16 of 50 samples"):
        forward_collect(model, [next(iter(loader))], 50)


def test_plain_pytorch_loop_example_runs(demo_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["plain_pytorch_loop.py"])
    module = runpy.run_path(str(ROOT / "examples" / "plain_pytorch_loop.py"))
    miner = module["main"](["--data", str(demo_dir), "--rounds", "2", "--epochs", "1", "--size", "24"])
    assert miner.round == 2
    assert "round 1:" in capsys.readouterr().out
