"""What acquisition functions read and build with: the :class:`Pool` every function shares, a
:class:`Batch` filled a lesion at a time (passing over near-duplicates), k-center greedy picks, and a
function's picks made whole lesions (:func:`whole_lesions`). Numpy in, numpy out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hardmine.core.index import NeighbourIndex
from hardmine.core.scores import logit

DUPLICATE_SIM = 0.95  # cosine similarity above which two pool images count as views of one thing


@dataclass
class Pool:
    """What every acquisition function may read (a function's own options are its keyword parameters).

    prob_pos : (N,) P(positive) of the pool images under the current model.
    embeddings : (N, D) L2-normalised pool embeddings (the model's space).
    threshold : the model's decision threshold (tuned on validation by cost).
    labeled_embeddings, labeled_labels : (M, D) and (M,) 0/1 of the labeled set, in the same space.
    seed : random seed (``random``, ties).
    lesions : (N,) integer lesion code of each pool image, or None (each image its own lesion).
    """

    prob_pos: np.ndarray
    embeddings: np.ndarray
    threshold: float = 0.5
    labeled_embeddings: np.ndarray | None = None
    labeled_labels: np.ndarray | None = None
    seed: int = 0
    lesions: np.ndarray | None = None

    def members(self, row: int) -> np.ndarray:
        """Pool rows of ``row``'s lesion, ``row`` first."""
        if self.lesions is None:
            return np.array([row])
        if not hasattr(self, "_by_lesion"):
            order = np.argsort(self.lesions, kind="stable")
            starts = np.searchsorted(self.lesions[order], np.arange(self.lesions.max() + 2))
            self._by_lesion = (order, starts)
        order, starts = self._by_lesion
        lesion = self.lesions[row]
        others = order[starts[lesion] : starts[lesion + 1]]
        return np.concatenate([[row], others[others != row]])

    def log_odds(self) -> np.ndarray:
        """(N,) log-odds of P(pos) re-centred on the threshold: 0 on it, positive above it."""
        return logit(self.prob_pos) - logit(self.threshold)

    def uncertainty(self) -> np.ndarray:
        """(N,) closeness to the decision threshold, in log-odds: higher = more uncertain."""
        return -np.abs(self.log_odds())

    def _index(self) -> NeighbourIndex:
        return NeighbourIndex().build(np.ascontiguousarray(self.embeddings, dtype=np.float32))


Picks = tuple[np.ndarray, list[str]]  # pool rows in pick order, the reason of each


def k_center(pool: Pool, candidates: np.ndarray, chosen: list[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` k-center greedy picks among pool rows ``candidates``, away from the labeled set and ``chosen``.

    Returns the picked rows in order and the cosine distance of each to its nearest labeled or earlier pick
    (inf when nothing is labeled yet).
    """
    emb = np.asarray(pool.embeddings, dtype=np.float32)
    own = np.ascontiguousarray(emb[candidates])
    if pool.labeled_embeddings is not None and len(pool.labeled_embeddings):
        labeled = np.ascontiguousarray(pool.labeled_embeddings, dtype=np.float32)
        sims, _ = NeighbourIndex().build(labeled).search(own, 1)
        distance = 1 - sims[:, 0].astype(np.float64)
    else:
        distance = np.full(len(candidates), np.inf)
    for i in chosen:
        distance = np.minimum(distance, 1 - own @ emb[i])
    distance[np.isin(candidates, chosen)] = -np.inf
    picks, distances = [], []
    for _ in range(min(n, int((distance > -np.inf).sum()))):  # the candidates not chosen already
        j = int(np.argmax(distance))
        if distance[j] == -np.inf:
            break
        picks.append(int(candidates[j]))
        distances.append(float(distance[j]))
        distance = np.minimum(distance, 1 - own @ own[j])
        distance[j] = -np.inf
    return np.array(picks, dtype=np.int64), np.array(distances)


class Batch:
    """A batch filled in order, a lesion at a time, passing over near-duplicates of earlier picks.

    A pick brings its lesion's other pool images, which count against the limit (so a share of the
    batch is a share of the images asked); a lesion that would not fit whole is passed over, and an
    image nearly identical (cosine >= DUPLICATE_SIM) to one already picked from another lesion too.
    """

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.embeddings = np.asarray(pool.embeddings, dtype=np.float32)
        self.taken = np.zeros(len(self.embeddings), dtype=bool)
        self.rows: list[int] = []
        self.reasons: list[str] = []

    def take(self, rows, why: Callable[[int], str], limit: int) -> None:
        """Add ``rows`` in order (with their lesions), each with reason ``why(row)``, while the batch has room."""
        for i in rows:
            if len(self.rows) >= limit:
                return
            i = int(i)
            if self.taken[i]:
                continue
            whole = self.pool.members(i)
            if len(self.rows) + len(whole) > limit or (
                self.rows and float(np.max(self.embeddings[self.rows] @ self.embeddings[i])) >= DUPLICATE_SIM
            ):
                continue
            self.taken[whole] = True
            self.reasons += [why(i), *[same_lesion_as(len(self.rows))] * (len(whole) - 1)]
            self.rows += whole.tolist()

    def picks(self) -> Picks:
        return np.array(self.rows, dtype=np.int64), self.reasons


def same_lesion_as(position: int) -> str:
    """The reason of an image asked because another image of its lesion was picked, at batch ``position``
    (0-based): named by its card number on the labeling page, never by a pool row the user cannot see."""
    return f"same lesion as card {position + 1}"


def whole_lesions(pool: Pool, order: np.ndarray, why: list[str], budget: int) -> tuple[np.ndarray, np.ndarray]:
    """The picks with their lesions, in order, up to ``budget`` images (a ``Batch`` passes already whole)."""
    rows, reasons = [], []
    taken = np.zeros(len(pool.prob_pos), dtype=bool)
    for i, reason in zip(order, why, strict=True):
        if taken[i]:
            continue  # already here as part of its lesion (the reason given with it stands)
        whole = pool.members(int(i))
        if len(rows) + len(whole) > budget:
            continue  # a lesion is asked whole or not at all; a smaller one may still fit
        taken[whole] = True
        reasons += [reason, *[same_lesion_as(len(rows))] * (len(whole) - 1)]
        rows += whole.tolist()
        if len(rows) == budget:
            break
    return np.array(rows, dtype=np.int64), np.array(reasons, dtype=object)
