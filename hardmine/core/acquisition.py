"""Acquisition functions as plug-ins: which unlabeled images deserve an expert's label next.

Numpy in, numpy out. Each function in :data:`ACQUISITION` ranks the pool and
returns its picks in order with the reason each was picked; :func:`acquire`
validates the inputs once, runs one, and keeps a lesion's images together (a
picked image brings the other images of its lesion, which count against the
budget). Score direction: P(positive) is P(melanoma), higher = more likely the
costly class.

Adding one: write ``def my_function(pool: Pool, budget: int) -> Picks`` here
and add one line to :data:`ACQUISITION`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hardmine.core.errors import HardmineError
from hardmine.core.index import NeighbourIndex
from hardmine.core.metrics import check_binary
from hardmine.core.scores import logit

DUPLICATE_SIM = 0.95  # cosine similarity above which two pool images count as views of one thing


@dataclass
class Pool:
    """What an acquisition function may read.

    prob_pos : (N,) P(positive) of the pool images under the current model.
    embeddings : (N, D) L2-normalised pool embeddings (the model's space).
    threshold : the model's decision threshold (tuned on validation by cost).
    labeled_embeddings, labeled_labels : (M, D) and (M,) 0/1 of the labeled set, in the same space.
    labeled_prob : (M,) the model's P(positive) on the labeled set (to find missed positives), or None.
    k : pool neighbours per labeled image (``seals``, ``hardmine``).
    positive_share : the share of a ``hardmine`` batch kept for the most likely positives.
    seed : random seed (``random``, ties).
    """

    prob_pos: np.ndarray
    embeddings: np.ndarray
    threshold: float = 0.5
    labeled_embeddings: np.ndarray | None = None
    labeled_labels: np.ndarray | None = None
    labeled_prob: np.ndarray | None = None
    k: int = 10
    positive_share: float = 0.5
    seed: int = 0

    def log_odds(self) -> np.ndarray:
        """(N,) log-odds of P(pos) re-centred on the threshold: 0 on it, positive above it."""
        return logit(self.prob_pos) - logit(self.threshold)

    def uncertainty(self) -> np.ndarray:
        """(N,) closeness to the decision threshold, in log-odds: higher = more uncertain."""
        return -np.abs(self.log_odds())

    def _index(self) -> NeighbourIndex:
        return NeighbourIndex().build(np.ascontiguousarray(self.embeddings, dtype=np.float32))


Picks = tuple[np.ndarray, list[str]]  # pool rows in pick order, the reason of each


def random(pool: Pool, budget: int) -> Picks:
    """Uniformly at random: the baseline every other function is measured against."""
    order = np.random.default_rng(pool.seed).permutation(len(pool.prob_pos))[:budget]
    return order, ["random"] * len(order)


def margin(pool: Pool, budget: int) -> Picks:
    """Closest to the tuned threshold first (uncertainty sampling where the decision is made)."""
    order = np.argsort(-pool.uncertainty(), kind="stable")[:budget]
    return order, [f"margin: P(pos) {pool.prob_pos[i]:.2f} at threshold {pool.threshold:.2f}" for i in order]


def entropy(pool: Pool, budget: int) -> Picks:
    """Highest entropy of P(pos) re-centred on the threshold (so the threshold reads as 0.5)."""
    q = np.clip(1 / (1 + np.exp(-pool.log_odds())), 1e-12, 1 - 1e-12)
    h = -(q * np.log(q) + (1 - q) * np.log(1 - q))
    order = np.argsort(-h, kind="stable")[:budget]
    return order, [f"entropy {h[i]:.2f} at the threshold" for i in order]


def positive(pool: Pool, budget: int) -> Picks:
    """Most likely positive first: finds melanomas fastest, learns little about the boundary."""
    order = np.argsort(-pool.prob_pos, kind="stable")[:budget]
    return order, [f"likely positive: P(pos) {pool.prob_pos[i]:.2f}" for i in order]


def coreset(pool: Pool, budget: int) -> Picks:
    """k-center greedy: each pick is the pool image farthest (cosine) from the labeled set and earlier picks."""
    emb = np.asarray(pool.embeddings, dtype=np.float32)
    if pool.labeled_embeddings is not None and len(pool.labeled_embeddings):
        labeled = np.ascontiguousarray(pool.labeled_embeddings, dtype=np.float32)
        sims, _ = NeighbourIndex().build(labeled).search(emb, 1)
        distance = 1 - sims[:, 0].astype(np.float64)
    else:
        distance = np.full(len(emb), np.inf)
    picks, reasons = [], []
    for _ in range(min(budget, len(emb))):
        i = int(np.argmax(distance))
        reasons.append("coreset: farthest from everything labeled" if np.isinf(distance[i])
                       else f"coreset: cosine distance {distance[i]:.2f} to the nearest labeled or picked")  # fmt: skip
        picks.append(i)
        distance = np.minimum(distance, 1 - emb @ emb[i])
        distance[i] = -np.inf
    return np.array(picks, dtype=np.int64), reasons


def _neighbours_of(pool: Pool, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, k) similarities and pool rows of each query's k nearest pool images."""
    k = min(pool.k, len(pool.prob_pos))
    return pool._index().search(np.ascontiguousarray(queries, dtype=np.float32), k)


def seals(pool: Pool, budget: int) -> Picks:
    """SEALS: only the k nearest pool images of the labeled positives are candidates, most uncertain first.

    Never proposes outside that neighbourhood, so a batch can come back short of the budget.
    """
    positives = _labeled_positives(pool)
    _, rows = _neighbours_of(pool, pool.labeled_embeddings[positives])
    candidates = np.unique(rows[rows >= 0])
    order = candidates[np.argsort(-pool.uncertainty()[candidates], kind="stable")][:budget]
    return order, [f"seals: near a labeled positive, P(pos) {pool.prob_pos[i]:.2f}" for i in order]


def hardmine(pool: Pool, budget: int) -> Picks:
    """The default: a positive quota, pool neighbours of missed positives, then uncertainty at the threshold.

    ``positive_share`` of the batch goes to the most likely positives; the pool neighbours of labeled
    positives the model misses (P(pos) below the threshold) come next, nearest first; the rest is the
    closest to the cost-tuned threshold. A pick nearly identical (cosine >= 0.95) to one already in the
    batch is passed over, so one batch is not many views of one thing.
    """
    emb = np.asarray(pool.embeddings, dtype=np.float32)
    chosen: list[int] = []
    reasons: list[str] = []
    taken = np.zeros(len(emb), dtype=bool)

    def take(rows, why, limit: int) -> None:
        for i in rows:
            if len(chosen) >= limit:
                return
            i = int(i)
            if taken[i] or (chosen and float(np.max(emb[chosen] @ emb[i])) >= DUPLICATE_SIM):
                continue
            taken[i] = True
            chosen.append(i)
            reasons.append(why(i))

    quota = int(round(pool.positive_share * budget))
    take(np.argsort(-pool.prob_pos, kind="stable"), lambda i: f"positive quota: P(pos) {pool.prob_pos[i]:.2f}", quota)
    missed = _missed_positives(pool)
    if len(missed):
        sims, rows = _neighbours_of(pool, pool.labeled_embeddings[missed])
        by_similarity = np.argsort(-sims, axis=None, kind="stable")
        take(rows.ravel()[by_similarity][rows.ravel()[by_similarity] >= 0],
             lambda i: f"near a missed positive: P(pos) {pool.prob_pos[i]:.2f}", budget)  # fmt: skip
    take(np.argsort(-pool.uncertainty(), kind="stable"),
         lambda i: f"uncertain: P(pos) {pool.prob_pos[i]:.2f} at threshold {pool.threshold:.2f}", budget)  # fmt: skip
    return np.array(chosen, dtype=np.int64), reasons


def _labeled_positives(pool: Pool) -> np.ndarray:
    if pool.labeled_embeddings is None or pool.labeled_labels is None or not np.any(pool.labeled_labels == 1):
        raise HardmineError("this acquisition needs labeled positives and their embeddings; none were given")
    return np.flatnonzero(np.asarray(pool.labeled_labels) == 1)


def _missed_positives(pool: Pool) -> np.ndarray:
    """Labeled positives the model calls negative (none when their probabilities are not given)."""
    if pool.labeled_prob is None or pool.labeled_labels is None or pool.labeled_embeddings is None:
        return np.empty(0, dtype=np.int64)
    labels, prob = np.asarray(pool.labeled_labels), np.asarray(pool.labeled_prob)
    return np.flatnonzero((labels == 1) & (prob < pool.threshold))


ACQUISITION: dict[str, Callable[[Pool, int], Picks]] = {
    "random": random,
    "margin": margin,
    "entropy": entropy,
    "positive": positive,
    "coreset": coreset,
    "seals": seals,
    "hardmine": hardmine,
}


def acquire(
    name: str,
    prob_pos,
    embeddings: np.ndarray,
    budget: int,
    *,
    groups=None,
    threshold: float = 0.5,
    labeled_embeddings: np.ndarray | None = None,
    labeled_labels=None,
    labeled_prob=None,
    k: int = 10,
    positive_share: float = 0.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick up to ``budget`` pool images to label with acquisition function ``name``.

    Parameters
    ----------
    prob_pos : (N,) P(positive) of the pool. embeddings : (N, D) L2-normalised pool embeddings.
    budget : images to pick (a lesion's images count one each).
    groups : (N,) lesion ids: a picked image brings its lesion's other pool images; a lesion that
        would not fit whole in what is left of the budget is passed over.
    threshold, labeled_*, k, positive_share, seed : see :class:`Pool`.

    Returns
    -------
    rows : (B,) pool rows to label, in pick order (lesions whole). reasons : (B,) why each was picked.
    """
    if name not in ACQUISITION:
        raise HardmineError(f"acquisition {name!r} is not valid; expected one of {', '.join(ACQUISITION)}")
    _, prob = check_binary(np.zeros(len(np.asarray(prob_pos)), dtype=int), prob_pos)
    emb = np.asarray(embeddings)
    n = len(prob)
    if emb.ndim != 2 or len(emb) != n:
        raise HardmineError(f"pool embeddings have shape {emb.shape}; expected ({n}, D)")
    if not 1 <= budget <= n:
        raise HardmineError(f"budget {budget} must be between 1 and the pool's {n} images")
    if not 0 <= positive_share <= 1 or k < 1:
        raise HardmineError(f"positive_share {positive_share} must be in [0, 1] and k {k} at least 1")
    if labeled_embeddings is not None and np.shape(labeled_embeddings)[1:] != emb.shape[1:]:
        raise HardmineError(f"labeled embeddings have shape {np.shape(labeled_embeddings)}; "
                            f"expected (M, {emb.shape[1]})")
    pool = Pool(prob, emb, threshold, labeled_embeddings, None if labeled_labels is None else
                check_binary(labeled_labels)[0], labeled_prob, k, positive_share, seed)  # fmt: skip
    # each pick brings at least one image, so `budget` picks fill the batch (a lesion that would not fit whole is
    # passed over, and the batch then comes back short by less than that lesion)
    order, why = ACQUISITION[name](pool, budget)
    return _whole_lesions(order, why, groups, budget)


def _whole_lesions(order: np.ndarray, why: list[str], groups, budget: int) -> tuple[np.ndarray, np.ndarray]:
    if groups is None:
        return order[:budget], np.array(why[:budget], dtype=object)
    codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)[1]
    members = {c: np.flatnonzero(codes == c) for c in np.unique(codes[order])}
    rows, reasons, seen = [], [], set()
    for i, reason in zip(order, why, strict=True):
        lesion = codes[i]
        if lesion in seen:
            continue
        whole = members[lesion]
        if len(rows) + len(whole) > budget:
            continue  # a lesion is asked whole or not at all; a smaller one may still fit
        seen.add(lesion)
        rows += [i, *[j for j in whole if j != i]]
        reasons += [reason, *[f"same lesion as {i}" for j in whole if j != i]]
        if len(rows) == budget:
            break
    return np.array(rows, dtype=np.int64), np.array(reasons, dtype=object)
