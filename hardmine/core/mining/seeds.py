"""Seeds: the misclassified and low-margin samples, hardest first, in per-class quotas (higher = harder)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hardmine.core.errors import HardmineError
from hardmine.core.metrics import COST_FN, COST_FP, check_binary, check_costs
from hardmine.core.mining.config import MiningConfig
from hardmine.core.scores import Signals, as_signals, hardness_scores, logit


def rank01(values: np.ndarray) -> np.ndarray:
    """Percentile rank in (0, 1] (ties share the higher rank); robust across score scales."""
    values = np.asarray(values, dtype=np.float64)
    order = np.sort(values)
    return np.searchsorted(order, values, side="right") / len(values)



@dataclass
class Selection:
    """Seeds chosen by :func:`select`.

    index : (S,) seed rows, hardest first.
    reasons : (S,) ``misclassified`` or ``low-margin``.
    hardness : (N,) hardness rank in (0, 1] of every sample (higher = harder).
    candidates : (N,) bool, every sample that met a seed criterion, before exclusion and quotas.
    """

    index: np.ndarray
    reasons: np.ndarray
    hardness: np.ndarray
    candidates: np.ndarray


def select(
    labels,
    prob_pos,
    *,
    threshold: float = 0.5,
    scores: np.ndarray | str = "loss",
    band: float = 1.0,
    max_frac: float = 0.2,
    cost_fn: float = COST_FN,
    cost_fp: float = COST_FP,
    exclude: np.ndarray | None = None,
    signals: Mapping[str, np.ndarray | None] | None = None,
) -> Selection:
    """Seeds: misclassified and low-margin samples, hardest first, per-class quotas.

    Parameters
    ----------
    labels : (N,) 0/1. prob_pos : (N,) P(positive).
    threshold : the round's decision threshold (positive when ``prob_pos >= threshold``).
    scores : a hardness name (see :func:`hardness_scores`) or an (N,) array, higher = harder.
    band : low-margin band: correct samples within ``band`` log-odds of the threshold.
    max_frac : at most this share of each class becomes seeds.
    cost_fn, cost_fp : false negatives rank ahead by ``cost_fn / cost_fp``.
    exclude : (N,) bool, samples never chosen (e.g. quarantined).
    signals : the per-sample columns a named hardness may read (:class:`hardmine.core.scores.Signals`,
        e.g. ``Signals.from_scores(scores)``, or a mapping such as ``{"forgetting": f}``).
    """
    y, p = check_binary(labels, prob_pos)
    MiningConfig(band=band, max_frac=max_frac).validate()
    check_costs(cost_fn, cost_fp)
    return choose_seeds(y, p, threshold, scores=scores, band=band, max_frac=max_frac, cost_ratio=cost_fn / cost_fp,
                        exclude=exclude, signals=as_signals(signals))  # fmt: skip


def choose_seeds(y: np.ndarray, p: np.ndarray, threshold: float, *, scores: np.ndarray | str, band: float,
                 max_frac: float, cost_ratio: float, exclude: np.ndarray | None,
                 signals: Signals) -> Selection:  # fmt: skip
    """:func:`select` on inputs already checked (by it, or by :func:`hardmine.core.mining.mine`)."""
    raw = hardness_scores(scores, y, p, signals) if isinstance(scores, str) else np.asarray(scores, float)
    if raw.shape != y.shape or not np.isfinite(raw).all():
        raise HardmineError(f"hardness scores must be {y.shape} finite values")
    hardness = rank01(raw)
    pred = p >= threshold
    misclassified = pred != (y == 1)
    low_margin = ~misclassified & (np.abs(logit(p) - logit(threshold)) < band)
    candidates = misclassified | low_margin
    eligible = candidates if exclude is None else candidates & ~np.asarray(exclude, dtype=bool)
    priority = hardness * np.where(misclassified & (y == 1), cost_ratio, 1.0)
    priority = priority + misclassified  # misclassified before low-margin within a class
    chosen = []
    for cls in (1, 0):
        members = np.flatnonzero(eligible & (y == cls))
        quota = int(np.floor(max_frac * np.sum(y == cls)))
        order = members[np.argsort(-priority[members], kind="stable")]
        chosen.append(order[:quota])
    index = np.concatenate(chosen)
    index = index[np.argsort(-priority[index], kind="stable")]
    reasons = np.where(misclassified[index], "misclassified", "low-margin").astype(object)
    return Selection(index.astype(np.int64), reasons, hardness, candidates)

