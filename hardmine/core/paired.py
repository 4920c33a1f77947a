"""Paired differences between two methods over seeds, with a two-level bootstrap interval (numpy).

With few positives a single run is noise (one melanoma is 0.03 of sensitivity
on 34 test melanomas), and seeds move results as much as methods do. Two
methods trained with the same seeds and scored on the same test images are
compared per seed; :func:`paired_difference` reports the mean over seeds of
``metric(A_s) - metric(B_s)`` and a percentile interval from resampling the
seeds and then the test groups (lesions, so that images of one lesion move
together), the same draw for both methods. The verdict is ``better`` when the
interval lies above zero, ``worse`` below, ``level`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hardmine.core.errors import HardmineError
from hardmine.core.metrics import check_binary

Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass
class PairedResult:
    """Mean paired difference A - B over seeds, its interval and the verdict at that level."""

    estimate: float
    low: float
    high: float
    verdict: str  # better | level | worse
    per_seed: np.ndarray  # (S,) metric(A_s) - metric(B_s) on the full test set


def paired_difference(
    labels: np.ndarray,
    groups: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    metric: Metric,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedResult:
    """Paired difference of ``metric`` between methods A and B, over seeds and test groups.

    Parameters
    ----------
    labels : (N,) 0/1 test labels. groups : (N,) test group keys (lesions).
    scores_a, scores_b : (S, N) each method's per-seed scores on the same N test images
        (P(positive), or 0/1 decisions for threshold metrics); row s of both used seed s.
    metric : ``metric(labels, scores) -> float``, higher = better; NaN results of a
        replicate (e.g. no positive drawn) are left out of the interval.
    n_boot : bootstrap replicates; level : interval coverage.

    Returns
    -------
    :class:`PairedResult`.
    """
    y, _ = check_binary(labels)
    a, b = np.atleast_2d(np.asarray(scores_a, dtype=np.float64)), np.atleast_2d(np.asarray(scores_b, dtype=np.float64))
    if a.shape != b.shape or a.shape[1] != len(y):
        raise HardmineError(f"scores {a.shape} and {b.shape} must both be (seeds, {len(y)})")
    if not 0 < level < 1 or n_boot < 1:
        raise HardmineError(f"level={level} must be in (0, 1) and n_boot={n_boot} at least 1")
    members = _group_members(groups, len(y))
    per_seed = np.array([metric(y, a[s]) - metric(y, b[s]) for s in range(len(a))])
    rng = np.random.default_rng(seed)
    diffs = np.full(n_boot, np.nan)
    for i in range(n_boot):
        seeds = rng.integers(0, len(a), len(a))
        rows = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        yy = y[rows]
        diffs[i] = np.mean([metric(yy, a[s, rows]) - metric(yy, b[s, rows]) for s in seeds])
    diffs = diffs[np.isfinite(diffs)]
    if len(diffs) == 0:
        raise HardmineError("every bootstrap replicate gave an undefined metric (too few positives?)")
    low, high = np.percentile(diffs, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    verdict = "better" if low > 0 else "worse" if high < 0 else "level"
    return PairedResult(float(np.mean(per_seed)), float(low), float(high), verdict, per_seed)


def _group_members(groups, n: int) -> list[np.ndarray]:
    """The rows of each group (lesion), the unit a bootstrap resamples; refuses a length other than ``n``."""
    codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)[1]
    if len(codes) != n:
        raise HardmineError(f"{len(codes)} groups for {n} labels")
    return [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]


# ------------------------------------------------------------------ fast metrics for the bootstrap loop
# scikit-learn computes the same values (the tests check it) but costs ~1 ms a call; a bootstrap
# over seeds x replicates x methods needs hundreds of thousands of calls.


def _sorted_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]  # last index of each tie block
    tps = np.cumsum(ys)[last]
    fps = (last + 1) - tps
    return tps, fps, int(ys.sum()), len(ys) - int(ys.sum())


def sens_at_spec(y: np.ndarray, p: np.ndarray, specificity: float = 0.9) -> float:
    """Highest sensitivity among ROC points with specificity >= ``specificity`` (NaN with one class)."""
    tps, fps, n_pos, n_neg = _sorted_counts(y, p)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ok = fps / n_neg <= 1 - specificity + 1e-12
    return float((tps[ok] / n_pos).max()) if ok.any() else 0.0


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (scikit-learn's definition; NaN without positives)."""
    tps, fps, n_pos, _ = _sorted_counts(y, p)
    if n_pos == 0:
        return float("nan")
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * tps / (tps + fps)))


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (NaN with one class)."""
    tps, fps, n_pos, n_neg = _sorted_counts(y, p)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    tpr, fpr = np.r_[0.0, tps / n_pos], np.r_[0.0, fps / n_neg]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def sensitivity(y: np.ndarray, decision: np.ndarray) -> float:
    """Share of positives decided positive (0/1 ``decision``; NaN without positives)."""
    return float(np.mean(decision[y == 1])) if (y == 1).any() else float("nan")


METRICS: dict[str, Metric] = {"sens_at_spec90": sens_at_spec, "auprc": average_precision, "auroc": auroc}


def paired_differences(
    labels: np.ndarray, groups: np.ndarray, prob_a: np.ndarray, prob_b: np.ndarray, metrics=tuple(METRICS), *,
    n_boot: int = 1000, seed: int = 0,
) -> dict[str, dict[str, float | str]]:  # fmt: skip
    """A minus B on one test set, per metric name of :data:`METRICS`: ``{metric: {a, b, difference, low,
    high, verdict}}`` for P(positive) ``prob_a``, ``prob_b`` (N,) each, the interval bootstrapped over
    the test groups (:func:`paired_difference` with one seed)."""
    out: dict[str, dict[str, float | str]] = {}
    a, b = np.asarray(prob_a)[None], np.asarray(prob_b)[None]
    for name in metrics:
        result = paired_difference(labels, groups, a, b, METRICS[name], n_boot=n_boot, seed=seed)
        out[name] = {"a": METRICS[name](labels, a[0]), "b": METRICS[name](labels, b[0]),
                     "difference": result.estimate, "low": result.low, "high": result.high,
                     "verdict": result.verdict}  # fmt: skip
    return out


def metric_intervals(
    labels: np.ndarray, groups: np.ndarray, prob: np.ndarray, metrics=tuple(METRICS), *, n_boot: int = 1000,
    seed: int = 0, level: float = 0.95,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """One model's metrics on one set with a percentile interval bootstrapped over its groups (lesions):
    ``{metric: {value, low, high}}`` for P(positive) ``prob`` (N,), each metric a name of :data:`METRICS`
    (higher = better). A replicate that leaves a metric undefined (no positive drawn) is left out."""
    y, p = check_binary(labels, prob)
    members = _group_members(groups, len(y))
    rng = np.random.default_rng(seed)
    draws = [np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))]) for _ in range(n_boot)]
    out: dict[str, dict[str, float]] = {}
    for name in metrics:
        metric = METRICS[name]
        values = np.array([metric(y[rows], p[rows]) for rows in draws])
        values = values[np.isfinite(values)]
        low, high = np.percentile(values, [(1 - level) / 2 * 100, (1 + level) / 2 * 100]) if len(values) else (
            np.nan, np.nan)  # fmt: skip
        out[name] = {"value": float(metric(y, p)), "low": float(low), "high": float(high)}
    return out
