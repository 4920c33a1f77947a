"""The pieces of label-suspicion evidence, as plug-ins: each a named function in :data:`EVIDENCE`.

A piece answers, for every training image, "how likely is its given label
wrong", as a class-balanced probability in [0, 1] (see :mod:`hardmine.core.suspicion`
for why each piece must come from something the mined model did not fit, and
how the pieces become one score). :func:`gather_evidence` runs every
registered piece once per round, in registry order, with one seed, and returns
an :class:`~hardmine.core.suspicion.Evidence`. A piece that does not apply
(no training dynamics recorded; networks not trained) returns None.

Adding a piece: write ``def my_piece(inputs: EvidenceInputs) -> Piece | None``
here and add one line to :data:`EVIDENCE`; ``scores.csv`` then holds its column
``suspicion_<name>`` and the suspicion's mean counts it. Numpy, scikit-learn and faiss only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hardmine.core.errors import HardmineError
from hardmine.core.index import NeighbourIndex
from hardmine.core.metrics import check_binary
from hardmine.core.suspicion import Evidence


@dataclass
class EvidenceInputs:
    """What a piece of evidence may read, for N training images.

    labels : (N,) 0/1. groups : (N,) lesion ids. embeddings : (N, D) L2-normalised embeddings of the
    round's model. confidence : (N,) mean probability of the given label over training epochs (when
    recorded). oof_prob : (N,) class-balanced P(positive) from networks trained out of fold (when trained).
    k : other-lesion neighbours per image. folds, seed : the out-of-fold head's grouped folds and their seed.
    index : a built :class:`~hardmine.core.index.NeighbourIndex` over ``embeddings`` to reuse.
    balanced : class-balanced pieces (the default), or at the data's prior.
    """

    labels: np.ndarray
    groups: np.ndarray
    embeddings: np.ndarray
    confidence: np.ndarray | None = None
    oof_prob: np.ndarray | None = None
    k: int = 10
    folds: int = 5
    seed: int = 0
    index: Any = None
    balanced: bool = True

    def wrong(self, prob_pos: np.ndarray) -> np.ndarray:
        """(N,) P(the other class than the given label) from a P(positive)."""
        return np.where(self.labels == 1, 1 - prob_pos, prob_pos)


@dataclass
class Piece:
    """One piece's (N,) P(the given label is wrong), and counts it wants kept beside it (``neighbours_other``...)."""

    wrong: np.ndarray
    details: dict[str, np.ndarray] = field(default_factory=dict)


def oof_head_prob(
    embeddings: np.ndarray, labels, groups, *, folds: int = 5, C: float = 0.1, seed: int = 0, balanced: bool = True
) -> np.ndarray:
    """(N,) class-balanced P(positive) of each sample from a linear head that never saw its lesion.

    ``embeddings`` (N, D) are the round's embeddings (raw or normalised); the head
    is an L2 logistic regression on standardised features with balanced class
    weights (unweighted, at the data's own prior, with ``balanced=False``).
    """
    from sklearn.linear_model import LogisticRegression

    from hardmine.core.splits import grouped_folds

    y, _ = check_binary(labels)
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y):
        raise HardmineError(f"embeddings have shape {x.shape}; expected ({len(y)}, D)")
    fold_of = grouped_folds(y, np.asarray(groups), [1 / folds] * folds, seed)
    prob = np.full(len(y), np.nan)
    for fold in range(folds):
        held = fold_of == fold
        fit = ~held
        if not held.any() or len(np.unique(y[fit])) < 2:
            continue
        mean, std = x[fit].mean(0), x[fit].std(0) + 1e-6
        model = LogisticRegression(C=C, class_weight="balanced" if balanced else None, max_iter=2000)
        model.fit((x[fit] - mean) / std, y[fit])
        prob[held] = model.predict_proba((x[held] - mean) / std)[:, 1]
    return np.where(np.isnan(prob), y.mean(), prob)


def neighbour_prob(
    embeddings: np.ndarray, labels, groups, *, k: int = 10, index=None, balanced: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class-balanced P(positive) from the labels of the ``k`` nearest images of other lesions.

    ``embeddings`` must be L2-normalised (cosine similarity). Each class's
    neighbour count is divided by the class's share of the data, so a sample
    whose neighbours look like the data as a whole gets 0.5 (with
    ``balanced=False``: the plain share of positive neighbours).

    Returns
    -------
    prob_pos : (N,) that probability. positives, seen : (N,) int, positive neighbours and neighbours found.
    """
    y, _ = check_binary(labels)
    emb = np.asarray(embeddings)
    codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)[1]
    if len(codes) != len(y) or emb.shape[0] != len(y):
        raise HardmineError(f"embeddings ({emb.shape[0]}) and groups ({len(codes)}) must match labels ({len(y)})")
    depth = min(len(y), k + int(np.bincount(codes).max()))
    index = index or NeighbourIndex().build(emb)
    _, nbrs = index.search(emb, depth)
    valid = (nbrs >= 0) & (codes[np.where(nbrs >= 0, nbrs, 0)] != codes[:, None])
    valid &= np.cumsum(valid, axis=1) <= k
    pos = (valid & (y[np.where(nbrs >= 0, nbrs, 0)] == 1)).sum(1)
    neg = valid.sum(1) - pos
    prior = y.mean() if balanced else 0.5  # 0.5 for both classes leaves the plain vote
    pos_rate, neg_rate = pos / max(prior, 1e-12), neg / max(1 - prior, 1e-12)
    total = pos_rate + neg_rate
    return np.where(total > 0, pos_rate / np.maximum(total, 1e-12), 0.5), pos, valid.sum(1)


def out_of_fold_head(inputs: EvidenceInputs) -> Piece | None:
    """A linear head refitted out of fold on the round's embeddings (none when networks were trained)."""
    if inputs.oof_prob is not None:
        return None
    return Piece(inputs.wrong(oof_head_prob(inputs.embeddings, inputs.labels, inputs.groups, folds=inputs.folds,
                                            seed=inputs.seed, balanced=inputs.balanced)))  # fmt: skip


def out_of_fold_networks(inputs: EvidenceInputs) -> Piece | None:
    """Whole networks trained out of fold (``--triage networks``): their backbones never saw the image."""
    return None if inputs.oof_prob is None else Piece(inputs.wrong(inputs.oof_prob))


def other_lesion_neighbours(inputs: EvidenceInputs) -> Piece | None:
    """The labels of the ``k`` nearest images of other lesions, each class's count divided by its prior."""
    prob, positives, seen = neighbour_prob(inputs.embeddings, inputs.labels, inputs.groups, k=inputs.k,
                                           index=inputs.index, balanced=inputs.balanced)  # fmt: skip
    other = np.where(inputs.labels == 1, seen - positives, positives)
    return Piece(inputs.wrong(prob), {"neighbours_other": other, "neighbours_seen": seen})


def training_dynamics(inputs: EvidenceInputs) -> Piece | None:
    """1 - the mean probability of the given label over training epochs (dataset cartography)."""
    return None if inputs.confidence is None else Piece(np.clip(1 - inputs.confidence, 0, 1))


# name -> piece; the name is the piece's key in Evidence.parts and its scores.csv column suspicion_<name>
EVIDENCE: dict[str, Callable[[EvidenceInputs], Piece | None]] = {
    "oof": out_of_fold_head,
    "networks": out_of_fold_networks,
    "neighbours": other_lesion_neighbours,
    "dynamics": training_dynamics,
}


def gather_evidence(
    labels,
    groups,
    embeddings: np.ndarray,
    *,
    confidence: np.ndarray | None = None,
    k: int = 10,
    folds: int = 5,
    seed: int = 0,
    index=None,
    balanced: bool = True,
    oof_prob: np.ndarray | None = None,
) -> Evidence:
    """Every registered piece of evidence for one round (:data:`EVIDENCE`), gathered once.

    Parameters
    ----------
    labels : (N,) 0/1. groups : (N,) lesion ids.
    embeddings : (N, D) L2-normalised embeddings of the round's model.
    confidence : (N,) mean probability of the given label over training epochs, if recorded.
    seed : seed of the out-of-fold head's folds (the run's seed).
    balanced : class-balanced head and neighbour vote (the default), or both at the data's prior.
    oof_prob : (N,) P(positive) from networks trained out of fold, at the same class balance as
        ``balanced`` (see :func:`~hardmine.core.suspicion.at_prior`); used instead of the out-of-fold
        head when given, and then the suspicion is theirs alone (``Evidence.networks``).
    """
    y, _ = check_binary(labels)
    for name, values in (("oof_prob", oof_prob), ("confidence", confidence)):
        if values is not None and np.shape(values) != y.shape:
            raise HardmineError(f"{name} has shape {np.shape(values)}; expected {y.shape}")
    inputs = EvidenceInputs(y, groups, embeddings, confidence=None if confidence is None else
                            np.asarray(confidence, dtype=np.float64), oof_prob=None if oof_prob is None else
                            np.asarray(oof_prob, dtype=np.float64), k=k, folds=folds, seed=seed, index=index,
                            balanced=balanced)  # fmt: skip
    parts, details = {}, {}
    for name, piece in EVIDENCE.items():
        found = piece(inputs)
        if found is not None:
            wrong = np.asarray(found.wrong, dtype=np.float64)
            if wrong.shape != y.shape or not np.all((wrong >= 0) & (wrong <= 1)):  # NaN fails too
                raise HardmineError(f"evidence piece {name!r} returned {wrong.shape} values outside [0, 1]; a piece "
                                    f"gives each of the {len(y)} images P(its label is wrong)")  # fmt: skip
            parts[name] = wrong
            details |= found.details
    return Evidence(parts, details)
