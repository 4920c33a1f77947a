"""Label suspicion: how likely each training label is wrong, from evidence the mined model did not fit.

A flipped label is exactly what a model gets "most wrong", so mining must not
trust the in-sample probabilities of the model being mined to tell a label
error from a hard case. Three pieces of out-of-sample evidence, each turned
into a *class-balanced* probability that the given label is wrong (so that
the minority class is not suspect merely for being rare):

* ``oof``: a linear head refitted out of fold (grouped folds: no lesion in
  two folds) on the round's embeddings, class-balanced L2 logistic regression;
  seconds on a CPU, and a linear head cannot memorise a flipped image the way
  the network did (cleanlab's and SELF's out-of-sample idea at head cost).
  When whole networks were trained out of fold (``--triage networks``), their
  probabilities replace the head's: their backbones never saw the image
  either, which the round's embeddings cannot claim (``oof_prob``).
* ``neighbours``: the labels of the nearest images from *other* lesions in
  embedding space, each class's count divided by its prior; other images of
  the same lesion are left out since they carry the same (possibly wrong) label.
* ``dynamics`` (when recorded): 1 - the mean probability of the given label
  over training epochs; low confidence with low variability is the
  label-error signature (dataset cartography), high variability the hard one.

:func:`label_suspicion` is the documented score (higher = more suspect, in
[0, 1]). With the out-of-fold *head* it is the mean of the available evidence;
with out-of-fold *networks* it is their evidence alone: the neighbours and the
dynamics come from the mined model's backbone, which saw (and, given epochs,
memorised) the flipped label, and averaging them in diluted the networks'
evidence (flip AUROC on the digits benchmark 0.98 alone, 0.93 averaged).
:func:`suspects` applies the default rule, measured in
``benchmarks/bench_triage.py``: suspect when the suspicion reaches
:func:`default_threshold` (0.7 with the head, 0.8 with networks, whose evidence
is sharper). Mining quarantines the suspects, and upweights nothing whose
:meth:`Evidence.doubt` (the larger of the suspicion and the mean of all the
evidence) reaches 0.55: a seed must look clean to every reading of the
evidence, and a doubtful label keeps its base weight without being listed for
review. Requiring the out-of-fold head and the neighbours to agree before a
quarantine was tried: it lost flips into the minority class, whose few
minority-class neighbours weigh heavily once counts are divided by the class
prior. Numpy and scikit-learn only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardmine.core.errors import HardmineError
from hardmine.core.metrics import check_binary

DEFAULT_THRESHOLD = 0.7  # quarantine, evidence from the out-of-fold head (measured: benchmarks/bench_triage.py)
NETWORKS_THRESHOLD = 0.8  # quarantine, evidence from networks trained out of fold (same benchmark, --oof-epochs)
DEFAULT_SEED_SUSPICION = 0.55  # a seed or neighbour must have less doubt than this


@dataclass
class Evidence:
    """Per-sample evidence that the given label is wrong, each (N,) in [0, 1] (None when not available)."""

    oof: np.ndarray
    neighbours: np.ndarray
    dynamics: np.ndarray | None = None
    neighbours_other: np.ndarray | None = None  # (N,) how many of the k other-lesion neighbours carry the other label
    neighbours_seen: np.ndarray | None = None  # (N,) how many other-lesion neighbours were found (up to k)
    networks: bool = False  # ``oof`` comes from networks trained out of fold, not from the out-of-fold head

    def columns(self) -> dict[str, np.ndarray]:
        """The evidence as ``scores.csv`` columns (``suspicion`` plus its parts; the out-of-fold part is
        ``suspicion_networks`` when it comes from networks trained out of fold, else ``suspicion_oof``)."""
        oof_column = "suspicion_networks" if self.networks else "suspicion_oof"
        cols = {"suspicion": self.score(), oof_column: self.oof, "suspicion_neighbours": self.neighbours}
        if self.dynamics is not None:
            cols["suspicion_dynamics"] = self.dynamics
        if self.neighbours_other is not None:
            cols["neighbours_other_label"] = self.neighbours_other
            cols["neighbours_seen"] = self.neighbours_seen
        return cols

    @classmethod
    def from_columns(cls, frame) -> Evidence | None:
        """Rebuild from ``scores.csv`` columns written by :meth:`columns` (None when absent)."""
        networks = "suspicion_networks" in frame
        if not networks and "suspicion_oof" not in frame:
            return None
        get = lambda name: frame[name].to_numpy() if name in frame else None  # noqa: E731
        return cls(get("suspicion_networks" if networks else "suspicion_oof"), get("suspicion_neighbours"),
                   get("suspicion_dynamics"), get("neighbours_other_label"), get("neighbours_seen"),
                   networks=networks)  # fmt: skip

    def mean(self) -> np.ndarray:
        """(N,) the mean of the available evidence."""
        parts = [e for e in (self.oof, self.neighbours, self.dynamics) if e is not None]
        return np.mean(parts, axis=0)

    def score(self) -> np.ndarray:
        """The label-suspicion score, (N,) in [0, 1], higher = more suspect: the out-of-fold networks'
        evidence when there is some (``networks``), else the mean of the available evidence."""
        return np.asarray(self.oof, dtype=np.float64) if self.networks else self.mean()

    def doubt(self) -> np.ndarray:
        """(N,) the larger of :meth:`score` and :meth:`mean`: what a seed or neighbour must stay below."""
        return np.maximum(self.score(), self.mean())


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
    from hardmine.core.index import NeighbourIndex

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
    """All evidence for one round: out-of-fold head, other-lesion neighbours, training dynamics.

    Parameters
    ----------
    labels : (N,) 0/1. groups : (N,) lesion ids.
    embeddings : (N, D) L2-normalised embeddings of the round's model.
    confidence : (N,) mean probability of the given label over training epochs, if recorded.
    balanced : class-balanced head and neighbour vote (the default), or both at the data's prior.
    oof_prob : (N,) P(positive) from networks trained out of fold, at the same class balance as
        ``balanced`` (see :func:`at_prior`); used instead of the out-of-fold head when given, and
        then the suspicion is theirs alone (``Evidence.networks``).
    """
    y, _ = check_binary(labels)
    if oof_prob is not None:
        oof_prob = np.asarray(oof_prob, dtype=np.float64)
        if oof_prob.shape != y.shape:
            raise HardmineError(f"oof_prob has shape {oof_prob.shape}; expected {y.shape}")
    wrong = lambda prob_pos: np.where(y == 1, 1 - prob_pos, prob_pos)  # noqa: E731 - P(the other class)
    dynamics = None
    if confidence is not None:
        c = np.asarray(confidence, dtype=np.float64)
        if c.shape != y.shape:
            raise HardmineError(f"confidence has shape {c.shape}; expected {y.shape}")
        dynamics = np.clip(1 - c, 0, 1)
    nbr_prob, nbr_pos, seen = neighbour_prob(embeddings, y, groups, k=k, index=index, balanced=balanced)
    return Evidence(
        oof=wrong(oof_prob if oof_prob is not None
                  else oof_head_prob(embeddings, y, groups, folds=folds, seed=seed, balanced=balanced)),
        neighbours=wrong(nbr_prob),
        dynamics=dynamics,
        neighbours_other=np.where(y == 1, seen - nbr_pos, nbr_pos),
        neighbours_seen=seen,
        networks=oof_prob is not None,
    )


def at_prior(prob_pos: np.ndarray, trained_prior: float, prior: float) -> np.ndarray:
    """(N,) P(positive) of a model trained at positive share ``trained_prior`` (0.5 when classes were
    balanced by oversampling or weights), re-expressed at positive share ``prior`` (Bayes' rule on
    the odds: only the prior changes, the likelihood ratio is kept)."""
    for name, value in (("trained_prior", trained_prior), ("prior", prior)):
        if not 0 < value < 1:
            raise HardmineError(f"{name} {value} must be in (0, 1)")
    p = np.clip(np.asarray(prob_pos, dtype=np.float64), 1e-9, 1 - 1e-9)
    odds = p / (1 - p) * (prior / (1 - prior)) / (trained_prior / (1 - trained_prior))
    return odds / (1 + odds)


def label_suspicion(evidence: Evidence) -> np.ndarray:
    """The documented per-image label-suspicion score (:meth:`Evidence.score`)."""
    return evidence.score()


def default_threshold(evidence: Evidence) -> float:
    """The measured quarantine threshold for this evidence: 0.8 from out-of-fold networks, else 0.7."""
    return NETWORKS_THRESHOLD if evidence.networks else DEFAULT_THRESHOLD


def suspects(evidence: Evidence, threshold: float | None = None) -> np.ndarray:
    """(N,) bool: the default rule, suspicion >= ``threshold`` (:func:`default_threshold` when None)."""
    threshold = default_threshold(evidence) if threshold is None else threshold
    if not 0 < threshold <= 1:
        raise HardmineError(f"suspicion threshold {threshold} must be in (0, 1]")
    return evidence.score() >= threshold
