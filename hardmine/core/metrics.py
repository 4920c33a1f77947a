"""Binary metrics and decision thresholds, numpy only.

Conventions: label 1 is the positive (costly, minority) class; ``prob_pos`` is
the predicted probability of the positive class (higher = more likely
positive); a sample is predicted positive when ``prob_pos >= threshold``.

When only one class is present, the ranking metrics (AUROC, AUPRC, the
operating points and the partial AUC) are undefined: they are returned as NaN
with a :class:`UserWarning`, while the counts and threshold metrics stay exact.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from hardmine.core.errors import HardmineError

# scikit-learn is imported inside the functions that use it: it takes over a second to load, which
# every command (and --help) paid before any metric was computed.

METRIC_KEYS = (
    "auroc", "auprc", "sensitivity", "specificity", "precision", "f1", "balanced_accuracy",
    "threshold", "sens_at_spec90", "spec_at_sens90", "sens_at_spec95", "pauc_sens80",
    "n", "n_pos", "tp", "fp", "tn", "fn",
)  # fmt: skip
THRESHOLD_RULES = ("cost", "target-sensitivity", "f1", "youden")


def softmax(logits) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, computed stably in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def check_binary(
    labels, prob_pos=None, label_name: str = "labels", prob_name: str = "prob_pos"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate (N,) 0/1 labels and, when given, (N,) probabilities in [0, 1].

    The one check of binary inputs every numpy entry point uses. Returns int64
    labels and float64 probabilities (None when not given); raises
    :class:`hardmine.core.errors.HardmineError` naming the bad value otherwise.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise HardmineError(f"{label_name} must be a 1-d array; got shape {y.shape}")
    if len(y) == 0:
        raise HardmineError(f"{label_name} is empty")
    if not np.isin(y, (0, 1)).all():
        raise HardmineError(f"{label_name} must hold 0/1 labels; found {sorted(set(np.unique(y)) - {0, 1})[:5]}")
    if prob_pos is None:
        return y.astype(np.int64), None
    p = np.asarray(prob_pos, dtype=np.float64)
    if p.shape != y.shape:
        raise HardmineError(
            f"{label_name} and {prob_name} must be 1-d of equal length; got shapes {y.shape} and {p.shape}"
        )
    if np.isnan(p).any():
        raise HardmineError(
            f"{prob_name} holds {int(np.isnan(p).sum())} NaN value(s), first at row {int(np.argmax(np.isnan(p)))}"
        )
    if (p < 0).any() or (p > 1).any():
        raise HardmineError(f"{prob_name} must lie in [0, 1]; found values from {p.min():.4g} to {p.max():.4g}")
    return y.astype(np.int64), p


def roc_points(y_true, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC operating points at every distinct score: ``sklearn.metrics.roc_curve``
    with ``drop_intermediate=False``.

    Returns ``fpr, tpr, thresholds``, each (K+1,), starting at (0, 0) with
    threshold ``inf``; point k predicts positive when ``score >= thresholds[k]``.
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(y_true, score, drop_intermediate=False)
    return fpr, tpr, thresholds


def pr_points(y_true, score) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at every distinct threshold (highest threshold first), (K,) each."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(y_true, score)
    return recall[:-1][::-1], precision[:-1][::-1]


def partial_auc_above_sensitivity(y_true, score, min_tpr: float = 0.8) -> float:
    """Un-normalised partial ROC AUC over the region where sensitivity >= ``min_tpr``.

    This is the ISIC 2024 challenge metric: labels and scores are flipped so the
    region becomes FPR <= 1 - min_tpr of the flipped problem, whose ROC area is
    integrated up to that FPR (linear interpolation at the edge). Range [0, 1 - min_tpr].
    """
    from sklearn.metrics import auc

    y = 1 - np.asarray(y_true)
    fpr, tpr, _ = roc_points(y, -np.asarray(score, dtype=np.float64))
    max_fpr = 1 - min_tpr
    stop = np.searchsorted(fpr, max_fpr, side="right")
    x, yy = fpr[:stop], tpr[:stop]
    if stop < len(fpr) and x[-1] < max_fpr:
        interp = np.interp(max_fpr, fpr[stop - 1 : stop + 1], tpr[stop - 1 : stop + 1])
        x, yy = np.r_[x, max_fpr], np.r_[yy, interp]
    return float(auc(x, yy))


def binary_metrics(
    y_true,
    prob_pos,
    threshold: float = 0.5,
    ci: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """All metrics of one evaluation, keyed as in DESIGN.md.

    Parameters
    ----------
    y_true : (N,) 0/1 labels, 1 = positive (costly) class.
    prob_pos : (N,) probabilities of the positive class in [0, 1].
    threshold : predict positive when ``prob_pos >= threshold``.
    ci : add stratified-bootstrap 95% intervals ``auroc_ci`` and ``sensitivity_ci``.

    Returns
    -------
    dict with keys :data:`METRIC_KEYS` (plus ``*_ci`` pairs when ``ci``).
    """
    y, p = check_binary(y_true, prob_pos, "y_true")
    out = _threshold_metrics(y, p, threshold)
    out.update(_ranking_metrics(y, p))
    if ci:
        out.update(bootstrap_ci(y, p, threshold, n_boot=n_boot, seed=seed))
    return {k: out[k] for k in METRIC_KEYS} | {k: v for k, v in out.items() if k not in METRIC_KEYS}


def _threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    tn = int(np.sum(~pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    prec = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {
        "sensitivity": sens,
        "specificity": spec,
        "precision": prec,
        "f1": f1,
        "balanced_accuracy": (sens + spec) / 2,
        "threshold": float(threshold),
        "n": len(y),
        "n_pos": int(y.sum()),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def _ranking_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import auc, average_precision_score

    keys = ("auroc", "auprc", "sens_at_spec90", "spec_at_sens90", "sens_at_spec95", "pauc_sens80")
    if y.min() == y.max():
        warnings.warn(f"only class {int(y[0])} present in y_true; ranking metrics are NaN", stacklevel=3)
        return dict.fromkeys(keys, float("nan"))
    fpr, tpr, _ = roc_points(y, p)
    return {
        "auroc": float(auc(fpr, tpr)),
        "auprc": float(average_precision_score(y, p)),
        "sens_at_spec90": float(tpr[fpr <= 0.10 + 1e-12].max()),
        "spec_at_sens90": float(1 - fpr[tpr >= 0.90 - 1e-12].min()),
        "sens_at_spec95": float(tpr[fpr <= 0.05 + 1e-12].max()),
        "pauc_sens80": partial_auc_above_sensitivity(y, p, 0.8),
    }


def bootstrap_ci(
    y_true, prob_pos, threshold: float, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, list[float]]:
    """Stratified bootstrap percentile intervals for AUROC and sensitivity."""
    from sklearn.metrics import roc_auc_score

    y, p = check_binary(y_true, prob_pos, "y_true")
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(pos) == 0 or len(neg) == 0:
        return {"auroc_ci": [float("nan")] * 2, "sensitivity_ci": [float("nan")] * 2}
    rng = np.random.default_rng(seed)
    aurocs, sens = np.empty(n_boot), np.empty(n_boot)
    for b in range(n_boot):
        idx = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        aurocs[b] = roc_auc_score(y[idx], p[idx])
        sens[b] = np.mean(p[idx][: len(pos)] >= threshold)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {
        "auroc_ci": np.percentile(aurocs, [lo, hi]).tolist(),
        "sensitivity_ci": np.percentile(sens, [lo, hi]).tolist(),
    }


# --------------------------------------------------------------------------- thresholds

# The default costs, spelled once: a missed positive (melanoma called benign) costs ten false alarms.
COST_FN, COST_FP = 10.0, 1.0


def expected_cost(fn, fp, cost_fn: float = COST_FN, cost_fp: float = COST_FP):
    """What ``fn`` missed positives and ``fp`` false alarms cost together (lower = better; arrays work)."""
    return cost_fn * fn + cost_fp * fp


def _cost_objective(tp, fp, tn, fn, n_pos, n_neg, *, cost_fn, cost_fp, **_):
    return -expected_cost(fn, fp, cost_fn, cost_fp)


def _f1_objective(tp, fp, tn, fn, n_pos, n_neg, **_):
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(denom, dtype=float), where=denom > 0)


def _youden_objective(tp, fp, tn, fn, n_pos, n_neg, **_):
    return tp / n_pos + tn / n_neg - 1


_OBJECTIVES: dict[str, Callable] = {
    "cost": _cost_objective,
    "f1": _f1_objective,
    "youden": _youden_objective,
}


def check_costs(cost_fn: float, cost_fp: float) -> None:
    """Raise :class:`HardmineError` unless what a missed positive and a false alarm cost are both positive."""
    if not (0 < cost_fn < np.inf and 0 < cost_fp < np.inf):
        raise HardmineError(f"costs must be positive and finite; got cost_fn={cost_fn}, cost_fp={cost_fp}")


def choose_threshold(
    y_true,
    prob_pos,
    rule: str = "cost",
    cost_fn: float = COST_FN,
    cost_fp: float = COST_FP,
    target: float = 0.9,
) -> float:
    """Pick a decision threshold on validation data.

    Parameters
    ----------
    rule
        ``cost``: minimise ``cost_fn * FN + cost_fp * FP``; ``target-sensitivity``:
        the highest threshold whose sensitivity is at least ``target``; ``f1``:
        maximise F1; ``youden``: maximise sensitivity + specificity - 1.

    Returns
    -------
    float
        A threshold among the observed probabilities (or 1.0 + eps, "never
        positive"), so that ``prob_pos >= threshold`` reproduces the chosen
        operating point exactly. Ties go to the lowest threshold (the more
        sensitive operating point), since a missed positive is the costly error.
    """
    if rule not in (*_OBJECTIVES, "target-sensitivity"):
        raise HardmineError(f"unknown threshold rule {rule!r}; expected one of {', '.join(THRESHOLD_RULES)}")
    check_costs(cost_fn, cost_fp)
    if not 0 < target <= 1:
        raise HardmineError(f"target sensitivity {target} must be in (0, 1]")
    y, p = check_binary(y_true, prob_pos, "y_true")
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        raise HardmineError(f"cannot tune a threshold: the validation data hold only one class ({n_pos} positive, "
                            f"{n_neg} negative images)")
    fpr, tpr, thresholds = roc_points(y, p)
    thresholds = thresholds.copy()
    thresholds[0] = np.nextafter(1.0, 2.0)  # "predict nothing positive"
    tp, fp = tpr * n_pos, fpr * n_neg
    fn, tn = n_pos - tp, n_neg - fp
    if rule == "target-sensitivity":
        ok = np.flatnonzero(tpr >= target - 1e-12)
        return float(thresholds[ok[0]])  # highest threshold reaching the target
    score = _OBJECTIVES[rule](tp, fp, tn, fn, n_pos, n_neg, cost_fn=cost_fn, cost_fp=cost_fp)
    best = np.flatnonzero(score >= score.max() - 1e-12 * max(1.0, abs(score.max())))
    return float(thresholds[best[-1]])
