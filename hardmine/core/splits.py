"""Grouped splits: train/val/test and out-of-fold folds with no group (lesion) in two parts. Numpy only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hardmine.core.errors import DataError

SPLITS = ("train", "val", "test")


def grouped_folds(labels: np.ndarray, groups: np.ndarray, fractions: Sequence[float], seed: int = 0) -> np.ndarray:
    """Assign each sample to one of ``len(fractions)`` parts with no group in two parts.

    Groups are stratified (groups holding a positive; the others), shuffled with
    the seed within each stratum, and cut at the cumulative fractions of their
    positive (respectively image) counts. Every part thus gets close to the
    whole set's positive rate and a representative mix of group sizes. The one
    grouped splitter: train/val/test splits and out-of-fold folds both use it.

    Parameters
    ----------
    labels : (N,) int array of 0/1.
    groups : (N,) array of group keys (lesion ids).
    fractions : (P,) non-negative fractions summing to 1.
    seed : random seed of the shuffle.

    Returns
    -------
    (N,) int array of part numbers in ``0..P-1``.
    """
    fractions = np.asarray(fractions, dtype=float)
    if fractions.ndim != 1 or len(fractions) < 2 or (fractions < 0).any() or abs(fractions.sum() - 1) > 1e-6:
        raise DataError(f"split fractions {fractions.tolist()} must be two or more values summing to 1")
    labels = np.asarray(labels).astype(np.int64)
    _, group_index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    n_groups = group_index.max() + 1
    pos_count = np.bincount(group_index, weights=labels, minlength=n_groups)
    size = np.bincount(group_index, minlength=n_groups)
    rng = np.random.default_rng(seed)
    bounds = np.cumsum(fractions)[:-1]
    assignment = np.empty(n_groups, dtype=np.int64)
    # Stratum 1: groups holding positives, cut by positive count; stratum 2: the rest, by size.
    for members, amount in ((pos_count > 0, pos_count), (pos_count == 0, size)):
        order = rng.permutation(np.flatnonzero(members))
        if len(order) == 0:
            continue
        cum = np.cumsum(amount[order])
        midpoint = (cum - amount[order] / 2) / cum[-1]
        assignment[order] = np.searchsorted(bounds, midpoint, side="right")
    return assignment[group_index]


def grouped_split(
    labels: np.ndarray,
    groups: np.ndarray,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> np.ndarray:
    """Assign each sample to train/val/test with no group in two splits (see :func:`grouped_folds`).

    Returns
    -------
    (N,) object array of ``"train" | "val" | "test"``.
    """
    if len(fractions) != 3:
        raise DataError(f"split fractions {list(fractions)} must be three values summing to 1")
    return np.array(SPLITS, dtype=object)[grouped_folds(labels, groups, fractions, seed)]
