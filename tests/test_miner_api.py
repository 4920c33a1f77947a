import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hardmine import HardMiner
from hardmine.engine.collect import forward_collect

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


def test_your_own_out_of_fold_probabilities_are_the_label_suspicion(planted_world):

    labels, prob, emb, groups, _, flipped = planted_world()
    miner = HardMiner(labels, groups=groups)
    # your cross-validated models, trained at the data's own prior: re-expressed at 50:50 first
    natural = 1 / (1 + (1 - prob) / prob * (1 - labels.mean()) / labels.mean())
    result = miner.update(prob, emb, oof_probs=natural, oof_prior=float(labels.mean()))
    assert result.evidence.networks
    assert result.evidence.score() == pytest.approx(np.where(labels == 1, 1 - prob, prob))
    assert result.quarantined[flipped].mean() >= 0.9 and not (result.hard_mask() & flipped).any()
    assert (result.quarantined == (result.evidence.score() >= 0.8)).all()
    with pytest.raises(ValueError, match="oof_probs has shape \\(3,\\)"):
        miner.update(prob, emb, oof_probs=prob[:3])


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
    stats = miner.last.stats
    assert (f"round 1: {stats['n_seeds']} seeds, {stats['n_neighbours']} neighbours, {stats['n_quarantined']} "
            f"quarantined, max weight {miner.weights.max():.2f}") in capsys.readouterr().out
    # the mined table names the demo's images, and the curriculum upweights its seeds class by class
    mined = miner.mined()
    assert set(mined["id"]) <= set(pd.read_csv(demo_dir / "HAM10000_metadata.csv")["image_id"])
    seed_ids = set(mined.loc[mined["role"] == "seed", "id"])
    assert len(seed_ids) == stats["n_seeds"] > 0
    weights = pd.Series(miner.weights, index=miner.ids)
    untouched = ~weights.index.isin(set(mined["id"]))
    for label in (0, 1):
        in_class = miner.labels == label
        seeds = weights.index.isin(seed_ids) & in_class
        if seeds.any():
            assert weights[seeds].min() > weights[untouched & in_class].median()


class _Indexed(torch.utils.data.Dataset):
    """(x, y, index) or dict samples over tensors."""

    def __init__(self, x, y, as_dict=False):
        self.x, self.y, self.as_dict = x, y, as_dict

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if self.as_dict:
            return {"image": self.x[i], "label": self.y[i], "index": i}
        return self.x[i], self.y[i], i


def _model_and_data(outputs=2, n=60):
    torch.manual_seed(0)
    x = torch.randn(n, 6)
    y = (x[:, 0] > 0.5).long()
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, outputs)), x, y


def test_shuffled_loader_is_mapped_by_index_or_refused():
    model, x, y = _model_and_data()
    expected = torch.softmax(model(x), 1)[:, 1].detach().numpy()
    for dataset in (_Indexed(x, y), _Indexed(x, y, as_dict=True)):
        probs, _ = forward_collect(model, DataLoader(dataset, batch_size=16, shuffle=True), 60, labels=y.numpy())
        assert np.allclose(probs, expected, atol=1e-6)
    miner = HardMiner(y.numpy(), k=3)
    with pytest.raises(ValueError, match="draws with RandomSampler .* no sample index"):
        miner.score(model, DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True))
    # an iterable in another order, without indices: its labels give it away
    order = torch.randperm(60, generator=torch.Generator().manual_seed(1))
    batches = [(x[order[i : i + 20]], y[order[i : i + 20]]) for i in range(0, 60, 20)]
    with pytest.raises(ValueError, match="in another order than the miner's labels"):
        miner.score(model, batches)
    assert miner.round == 0


@pytest.mark.parametrize(("outputs", "positive_class"), [(1, None), (3, 2)])
def test_single_logit_and_one_vs_rest_models(outputs, positive_class):
    model, x, y = _model_and_data(outputs)
    logits = model(x).detach()
    expected = torch.sigmoid(logits[:, 0]) if outputs == 1 else torch.softmax(logits, 1)[:, positive_class]
    probs, _ = forward_collect(model, DataLoader(TensorDataset(x, y), batch_size=16), 60,
                               positive_class=positive_class)  # fmt: skip
    assert np.allclose(probs, expected.numpy(), atol=1e-6)
    class_ids = y * (positive_class or 1)  # one-vs-rest: the loader yields class ids, the miner holds 0/1
    HardMiner(y.numpy(), k=3).score(model, DataLoader(TensorDataset(x, class_ids), batch_size=16),
                                    positive_class=positive_class)  # fmt: skip


def test_unreadable_batches_and_logits_are_clear_errors():
    model, x, y = _model_and_data(3)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    with pytest.raises(ValueError, match="3 logits per sample; pass positive_class"):
        forward_collect(model, loader, 60)
    with pytest.raises(ValueError, match="positive_class=5 but the model returns 3 logits"):
        forward_collect(model, loader, 60, positive_class=5)
    with pytest.raises(ValueError, match="a tuple of 4"):
        forward_collect(model, [(x, y, y, y)], 60)
    with pytest.raises(ValueError, match="dict batch needs an image under one of image"):
        forward_collect(model, [{"pixels": x}], 60)
    model2 = nn.Sequential(nn.Linear(6, 4), nn.Unflatten(1, (2, 2)))
    with pytest.raises(ValueError, match="logits of shape \\(16, 2, 2\\)"):
        forward_collect(model2, loader, 60)


def test_sampler_moves_to_a_new_order_each_epoch_by_itself():
    from hardmine.engine.sampler import CurriculumSampler

    w = np.ones(50)
    s = CurriculumSampler(w, seed=3, num_replicas=1, rank=0)
    epochs = [list(s) for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
    reference = CurriculumSampler(w, seed=3, num_replicas=1, rank=0)
    reference.set_epoch(2)
    assert list(reference) == epochs[2]
    reference.set_epoch(2)  # DDP style: set_epoch every epoch gives exactly that epoch
    assert list(reference) == epochs[2]
    assert s.next_epoch == 3


def test_miner_sampler_honours_num_samples_and_resumes_the_epoch(tmp_path):
    labels, _, _ = _arrays()
    miner = HardMiner(labels)
    assert len(miner.sampler()) == 200 and len(miner.sampler(num_samples=50)) == 50
    assert len(list(miner.sampler())) == 50  # asking for the sampler again keeps its draws per epoch
    assert len(list(miner.sampler(num_samples=200))) == 200
    list(miner.sampler())
    resumed = HardMiner(labels)
    resumed.load_state_dict(miner.state_dict())
    assert list(resumed.sampler()) == list(miner.sampler())


def test_a_majority_positive_class_is_flagged_and_a_flipped_numbering_named():
    from hardmine.core.errors import HardmineError, HardmineWarning

    targets = np.r_[np.zeros(8, int), np.ones(32, int)]  # ImageFolder: melanoma=0 (8 images), nevus=1
    with pytest.warns(HardmineWarning, match="32 of 40 labels are 1"):
        HardMiner(targets)
    miner = HardMiner(targets == 0)  # melanoma as the positive
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    loader = DataLoader(TensorDataset(torch.randn(40, 4), torch.as_tensor(targets)), batch_size=40)
    with pytest.raises(HardmineError, match="numbered the other way round; pass positive_class"):
        miner.score(model, loader)
