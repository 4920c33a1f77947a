import numpy as np
import pytest
import torch

from hardmine.core import curriculum
from hardmine.engine.sampler import CurriculumSampler


def test_weights_mean_one_cap_and_boosts():
    labels = np.array([1] * 10 + [0] * 90)
    hard = np.zeros(100)
    hard[[0, 50]] = 1.0
    nb = np.zeros(100)
    nb[[60, 61]] = 0.5
    w = curriculum.weights(labels, hard, nb, alpha=1.0, beta=0.5, max_weight=50)
    assert w.mean() == pytest.approx(1.0)
    base_pos, base_neg = w[1], w[70]
    assert base_pos / base_neg == pytest.approx(9.0)  # class balance: 90 / 10
    assert w[0] / base_pos == pytest.approx(2.0) and w[50] / base_neg == pytest.approx(2.0)
    assert w[60] / base_neg == pytest.approx(1.25)
    capped = curriculum.weights(labels, hard, nb, max_weight=3.0)
    assert capped.max() <= 3.0 + 1e-9 and capped.mean() == pytest.approx(1.0)
    excluded = curriculum.weights(labels, hard, nb, max_weight=50, exclude=np.arange(100) == 0)
    assert excluded[0] == pytest.approx(excluded[1])


def test_weights_ema_smooths_towards_previous():
    labels = np.array([0, 0, 1, 1])
    previous = np.array([2.0, 0.5, 0.5, 1.0])
    new = curriculum.weights(labels, max_weight=10)
    smoothed = curriculum.weights(labels, max_weight=10, previous=previous, ema=0.5)
    assert np.allclose(smoothed, (0.5 * previous + 0.5 * new) / (0.5 * previous + 0.5 * new).mean())


def test_stats_effective_ratio_and_size():
    labels = np.array([1, 0, 0, 0])
    st = curriculum.stats(np.array([3.0, 1, 1, 1]), labels)
    assert st.effective_class_ratio == pytest.approx(1.0)
    assert st.effective_sample_size == pytest.approx(36 / 12)


def test_sampler_deterministic_weighted_and_epoch_dependent():
    w = np.r_[np.full(10, 10.0), np.ones(90)]
    a = list(CurriculumSampler(w, seed=3, num_replicas=1, rank=0))
    b = list(CurriculumSampler(w, seed=3, num_replicas=1, rank=0))
    assert a == b and len(a) == 100
    s = CurriculumSampler(w, num_samples=20000, seed=3, num_replicas=1, rank=0)
    draws = np.array(list(s))
    assert abs((draws < 10).mean() - 100 / 190) < 0.02
    s.set_epoch(1)
    assert list(s)[:50] != draws[:50].tolist()


def test_sampler_ddp_strides_disjoint_and_cover():
    w = np.random.default_rng(0).random(103)
    samplers = [CurriculumSampler(w, seed=5, num_replicas=4, rank=r) for r in range(4)]
    for s in samplers:
        s.set_epoch(2)
    full = samplers[0].full_sequence().tolist()
    parts = [list(s) for s in samplers]
    assert all(len(p) == len(samplers[0]) == 26 for p in parts)
    positions = [set(range(r, len(full), 4)) for r in range(4)]
    assert set.union(*positions) == set(range(len(full))) and sum(map(len, positions)) == len(full)
    assert all(p == [full[i] for i in range(r, len(full), 4)] for r, p in enumerate(parts))


def test_sampler_update_weights_and_bad_input():
    s = CurriculumSampler(np.ones(5), seed=0, num_replicas=1, rank=0)
    s.update_weights(np.array([0, 0, 1.0, 0, 0]))
    assert set(s) == {2}
    with pytest.raises(ValueError, match="not all zero"):
        s.update_weights(np.zeros(5))
    with pytest.raises(ValueError, match="rank 2 must be in \\[0, 2\\)"):
        CurriculumSampler(np.ones(5), num_replicas=2, rank=2)
    # a DataLoader draws with it: every draw lands on the one weighted sample
    assert list(torch.utils.data.DataLoader(list(range(10, 15)), sampler=s, batch_size=None)) == [12] * 5
