import numpy as np
import pytest
from sklearn import metrics as skm

from hardmine.core.metrics import METRIC_KEYS, binary_metrics, choose_threshold


def _random_case(seed, n=300, ties=False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    y[:2] = [0, 1]
    p = np.clip(rng.normal(0.3 + 0.3 * y, 0.2), 0, 1)
    if ties:
        p = np.round(p, 1)  # many tied scores
    return y, p


def _isic_pauc(y, p, min_tpr=0.8):
    """The ISIC 2024 scorer, verbatim in logic."""
    v_gt = abs(np.asarray(y) - 1)
    v_pred = -1.0 * np.asarray(p)
    max_fpr = abs(1 - min_tpr)
    scaled = skm.roc_auc_score(v_gt, v_pred, max_fpr=max_fpr)
    return 0.5 * max_fpr**2 + (max_fpr - 0.5 * max_fpr**2) / (1.0 - 0.5) * (scaled - 0.5)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, False), (3, True)])
def test_binary_metrics_equal_scikit_learn(seed, ties):
    y, p = _random_case(seed, ties=ties)
    m = binary_metrics(y, p, threshold=0.45)
    assert list(m)[: len(METRIC_KEYS)] == list(METRIC_KEYS)
    pred = (p >= 0.45).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (tp, fp, tn, fn)
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)
    assert m["auprc"] == pytest.approx(skm.average_precision_score(y, p), abs=1e-9)
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred), abs=1e-9)
    assert m["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0), abs=1e-9)
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred), abs=1e-9)
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-9)
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-9)
    fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    assert m["sens_at_spec90"] == pytest.approx(tpr[fpr <= 0.1].max(), abs=1e-12)
    assert m["sens_at_spec95"] == pytest.approx(tpr[fpr <= 0.05].max(), abs=1e-12)
    assert m["spec_at_sens90"] == pytest.approx(1 - fpr[tpr >= 0.9].min(), abs=1e-12)
    assert m["pauc_sens80"] == pytest.approx(_isic_pauc(y, p), abs=1e-9)
    assert (m["n"], m["n_pos"]) == (len(y), y.sum())


def test_single_class_gives_nan_with_warning():
    with pytest.warns(UserWarning, match="only class 0 present"):
        m = binary_metrics(np.zeros(5, int), np.linspace(0, 1, 5))
    assert np.isnan(m["auroc"]) and np.isnan(m["sens_at_spec90"])
    assert m["fp"] == 3 and m["specificity"] == pytest.approx(0.4)


@pytest.mark.parametrize(
    "prob,match",
    [([0.2, 1.3], "must lie in \\[0, 1\\].*1.3"), ([0.2, np.nan], "1 NaN"), ([0.1], "equal length")],
)
def test_bad_probabilities_rejected(prob, match):
    with pytest.raises(ValueError, match=match):
        binary_metrics([0, 1], prob)


def test_confidence_intervals_bracket_estimate():
    y, p = _random_case(4)
    m = binary_metrics(y, p, 0.5, ci=True, n_boot=200)
    lo, hi = m["auroc_ci"]
    assert lo < m["auroc"] < hi and hi - lo < 0.3
    lo, hi = m["sensitivity_ci"]
    assert lo <= m["sensitivity"] <= hi


def test_cost_threshold_picks_cost_minimum_on_hand_made_case():
    # sorted by probability: labels    0    1    0    1    0    0
    y = np.array([0, 1, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    # predict positive at p >= t. cost(FN)=10, cost(FP)=1:
    #   t > 0.9: 2 FN -> 20 ; t=0.9: 1 FP, 2 FN -> 21 ; t=0.8: 1 FP 1 FN -> 11
    #   t=0.7: 2 FP 1 FN -> 12 ; t=0.3: 2 FP 0 FN -> 2 ; t=0.2: 3 ; t=0.1: 4
    assert choose_threshold(y, p, "cost", cost_fn=10, cost_fp=1) == 0.3
    # equal costs: 2 errors at t>0.9, t=0.8 and t=0.3; ties go to the most sensitive
    assert choose_threshold(y, p, "cost", cost_fn=1, cost_fp=1) == 0.3
    # false alarms dear: predicting nothing positive is cheapest (2 FN -> 2)
    assert choose_threshold(y, p, "cost", cost_fn=1, cost_fp=3) > 1.0
    # brute force agrees for random data
    yr, pr = _random_case(7)
    t = choose_threshold(yr, pr, "cost", cost_fn=7, cost_fp=1)
    costs = {c: 7 * np.sum((pr < c) & (yr == 1)) + np.sum((pr >= c) & (yr == 0)) for c in np.unique(pr)}
    assert 7 * np.sum((pr < t) & (yr == 1)) + np.sum((pr >= t) & (yr == 0)) == min(costs.values())


def test_other_threshold_rules():
    y, p = _random_case(8)
    t = choose_threshold(y, p, "target-sensitivity", target=0.9)
    assert np.mean(p[y == 1] >= t) >= 0.9
    higher = np.unique(p)[np.unique(p) > t]
    assert all(np.mean(p[y == 1] >= h) < 0.9 for h in higher)
    f1s = {c: skm.f1_score(y, p >= c) for c in np.unique(p)}
    assert skm.f1_score(y, p >= choose_threshold(y, p, "f1")) == pytest.approx(max(f1s.values()))
    fpr, tpr, thr = skm.roc_curve(y, p)
    t = choose_threshold(y, p, "youden")
    assert np.mean(p[y == 1] >= t) - np.mean(p[y == 0] >= t) == pytest.approx((tpr - fpr).max())
    with pytest.raises(ValueError, match="unknown threshold rule 'median'.*cost"):
        choose_threshold(y, p, "median")


def test_metric_intervals_bootstrap_one_model_over_its_groups():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from hardmine.core.errors import HardmineError
    from hardmine.core.paired import metric_intervals

    rng = np.random.default_rng(0)
    y = np.array([1] * 20 + [0] * 180)
    p = np.clip(y * 0.4 + rng.uniform(0, 0.6, 200), 0, 1)
    groups = np.arange(200) // 2
    found = metric_intervals(y, groups, p, n_boot=300)
    assert found["auroc"]["value"] == pytest.approx(roc_auc_score(y, p))
    assert found["auprc"]["value"] == pytest.approx(average_precision_score(y, p))
    for m in found.values():
        assert m["low"] <= m["value"] <= m["high"] and m["high"] - m["low"] > 0.01
    perfect = metric_intervals(y, groups, y * 0.9 + 0.05, ("auroc",), n_boot=100)["auroc"]
    assert (perfect["low"], perfect["value"], perfect["high"]) == (1.0, 1.0, 1.0)
    with pytest.raises(HardmineError, match="199 groups for 200 labels"):
        metric_intervals(y, groups[:199], p)


def test_the_costs_and_their_formula_are_spelled_once():
    """The default costs of a missed positive and a false alarm, and how they add up, live in core/metrics only:
    a signature with its own 10.0 or a second copy of the formula drifts from them."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "hardmine"
    for path in root.rglob("*.py"):
        text = path.read_text()
        if path.name == "metrics.py" and path.parent.name == "core":
            continue
        assert not re.search(r"cost_f[np]: float = \d", text), path  # defaults: COST_FN, COST_FP
        assert not re.search(r"cost_fn \* |\* cost_fn\b|cost_fp \* ", text), path  # the formula: expected_cost
    from hardmine.core.metrics import COST_FN, COST_FP, expected_cost
    from hardmine.record.config import ThresholdConfig

    assert (ThresholdConfig().cost_fn, ThresholdConfig().cost_fp) == (COST_FN, COST_FP) == (10.0, 1.0)
    assert expected_cost(2, 5) == 25.0
