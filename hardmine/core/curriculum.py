"""Curriculum weights from mining results, numpy in and numpy out.

The weights multiply a class-balance base by ``1 + alpha * hardness + beta *
neighbour``, are capped and smoothed across rounds. The torch sampler that
draws by them is :class:`hardmine.engine.sampler.CurriculumSampler`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardmine.core.errors import HardmineError


@dataclass
class CurriculumStats:
    """Summary of a weight vector: effective class ratio and effective sample size."""

    effective_class_ratio: float  # positive draws per negative draw
    effective_sample_size: float  # Kish ESS = (sum w)^2 / sum w^2


def class_balance_weights(labels: np.ndarray) -> np.ndarray:
    """Per-sample weights giving each class the same total weight, mean 1. (N,) float64."""
    labels = np.asarray(labels)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w / w.mean()


def weights(
    labels: np.ndarray,
    hard: np.ndarray | None = None,
    neighbour: np.ndarray | None = None,
    alpha: float = 1.0,
    beta: float = 0.5,
    max_weight: float = 10.0,
    previous: np.ndarray | None = None,
    ema: float = 0.5,
    balance: bool = True,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Curriculum weights: class balance x (1 + alpha*hard + beta*neighbour).

    Parameters
    ----------
    labels : (N,) int class labels.
    hard : (N,) hardness in [0, 1] of seeds (0 elsewhere); higher = harder.
    neighbour : (N,) neighbour contribution in [0, 1] (0 elsewhere).
    alpha, beta : strengths of the hard and neighbour terms.
    max_weight : cap, as a multiple of the mean weight.
    previous : (N,) the previous round's weights; the result is
        ``ema * previous + (1 - ema) * new`` so the curriculum moves smoothly.
    balance : multiply by class-balance weights.
    exclude : (N,) bool; these samples (quarantined) keep the base weight
        and get no hardness or neighbour boost.

    Returns
    -------
    (N,) float64 weights with mean 1, each at most ``max_weight`` (when the cap is
    feasible, i.e. ``max_weight >= 1``).
    """
    labels = np.asarray(labels)
    n = len(labels)
    hard = _vector(hard, n, "hard")
    neighbour = _vector(neighbour, n, "neighbour")
    if max_weight < 1:
        raise HardmineError(f"max_weight={max_weight} must be >= 1 (it is a multiple of the mean)")
    if not 0 <= ema < 1:
        raise HardmineError(f"ema={ema} must be in [0, 1)")
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        hard = np.where(exclude, 0.0, hard)
        neighbour = np.where(exclude, 0.0, neighbour)
    base = class_balance_weights(labels) if balance else np.ones(n)
    w = base * (1 + alpha * hard + beta * neighbour)
    w = _normalise_capped(w, max_weight)
    if previous is not None:
        previous = _vector(previous, n, "previous")
        if exclude is not None:  # an excluded sample keeps no boost from earlier rounds: its class's typical weight
            for cls in np.unique(labels):
                members = labels == cls
                kept = members & ~exclude
                if kept.any():
                    previous = np.where(members & exclude, np.median(previous[kept]), previous)
        w = _normalise_capped(ema * previous + (1 - ema) * w, max_weight)
    return w


def _vector(values: np.ndarray | None, n: int, name: str) -> np.ndarray:
    if values is None:
        return np.zeros(n)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n,):
        raise HardmineError(f"{name} has shape {values.shape}; expected ({n},) like labels")
    if not np.isfinite(values).all() or (values < 0).any():
        raise HardmineError(f"{name} must be finite and non-negative")
    return values


def _normalise_capped(w: np.ndarray, max_weight: float) -> np.ndarray:
    """Scale to mean 1, then cap at ``max_weight`` by water-filling: capped samples are
    pinned at the cap and the others rescaled so the mean stays exactly 1."""
    w = w / w.mean()
    n = len(w)
    capped = np.zeros(n, dtype=bool)
    for _ in range(n):
        newly = ~capped & (w > max_weight)
        if not newly.any():
            break
        capped |= newly
        free_sum = w[~capped].sum()
        if free_sum <= 0:
            break
        w = np.where(capped, max_weight, w * (n - max_weight * capped.sum()) / free_sum)
    return w


def stats(w: np.ndarray, labels: np.ndarray) -> CurriculumStats:
    """Effective class ratio and sample size of weights ``w`` over ``labels`` (1 = positive)."""
    w = np.asarray(w, dtype=np.float64)
    labels = np.asarray(labels)
    pos = w[labels == 1].sum() / w.sum()
    return CurriculumStats(
        effective_class_ratio=float(pos / (1 - pos)) if pos < 1 else float("inf"),
        effective_sample_size=float(w.sum() ** 2 / (w**2).sum()),
    )
