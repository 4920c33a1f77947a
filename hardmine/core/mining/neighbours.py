"""Expansion: each seed's attention spread to its near neighbours in embedding space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hardmine.core.index import NeighbourIndex
from hardmine.core.metrics import check_binary
from hardmine.core.mining.config import MiningConfig, check_embeddings, check_k


@dataclass
class Expansion:
    """Neighbour contributions from :func:`expand`.

    contribution : (N,) float in [0, 1], 0 for non-neighbours.
    pairs : DataFrame ``seed, neighbour, similarity, contribution`` (row numbers).
    """

    contribution: np.ndarray
    pairs: pd.DataFrame


def expand(
    embeddings: np.ndarray,
    seed_index: np.ndarray,
    labels,
    groups: np.ndarray | None = None,
    *,
    strength: np.ndarray | None = None,
    k: int = 10,
    min_sim: float = 0.5,
    mode: str = "same-label",
    seed_cap: float = 3.0,
    exclude: np.ndarray | None = None,
    index=None,
) -> Expansion:
    """Spread seed attention to near neighbours in embedding space.

    Parameters
    ----------
    embeddings : (N, D) L2-normalised (cosine similarity = inner product).
    seed_index : (S,) seed rows.
    labels : (N,) 0/1. groups : (N,) group keys; the seed's own group counts once.
    strength : (S,) per-seed strength in [0, 1] (default 1), e.g. its hardness.
    k : neighbours per seed. min_sim : least cosine similarity that counts.
    mode : ``same-label``, ``opposite-label`` or ``both`` (label relation to the seed).
    seed_cap : most total decay mass one seed hands out; more is scaled down.
    exclude : (N,) bool, never a neighbour (seeds, quarantined).
    index : a built :class:`hardmine.core.index.NeighbourIndex` over ``embeddings`` (built if None).

    A neighbour at similarity s receives ``strength * (s - min_sim) / (1 - min_sim)``;
    contributions from several seeds add up, clipped to 1.
    """
    MiningConfig(expand=mode, k=k, min_sim=min_sim, seed_cap=seed_cap).validate()
    y, _ = check_binary(labels)
    emb = check_embeddings(embeddings, len(y))
    check_k(k, len(y))
    seed_index = np.asarray(seed_index, dtype=np.int64)
    strength = np.ones(len(seed_index)) if strength is None else np.asarray(strength, dtype=np.float64)
    return spread(emb, seed_index, y, groups, strength, k, min_sim, mode, seed_cap, exclude, index)


def spread(emb, seed_index, y, groups, strength, k, min_sim, mode, seed_cap, exclude, index) -> Expansion:
    """:func:`expand` on inputs already checked (by it, or by :func:`hardmine.core.mining.mine`)."""
    n = len(y)
    contribution = np.zeros(n)
    if len(seed_index) == 0:
        return Expansion(contribution, pd.DataFrame(columns=["seed", "neighbour", "similarity", "contribution"]))
    group_codes = None if groups is None else pd.factorize(np.asarray(groups))[0]
    extra = 0 if group_codes is None else int(np.bincount(group_codes).max())
    depth = min(n, k + extra + 1)
    if index is None:
        index = NeighbourIndex().build(emb)
    sims, nbrs = index.search(emb[seed_index], depth)
    excluded = np.zeros(n, dtype=bool) if exclude is None else np.asarray(exclude, dtype=bool)
    slots = _neighbour_slots(nbrs, seed_index, group_codes, k)
    safe = np.where(nbrs >= 0, nbrs, 0)
    ok = slots & (sims >= min_sim) & ~excluded[safe]
    if mode == "same-label":
        ok &= y[safe] == y[seed_index][:, None]
    elif mode == "opposite-label":
        ok &= y[safe] != y[seed_index][:, None]
    decay = np.where(ok, (sims - min_sim) / max(1 - min_sim, 1e-12), 0.0)
    total = decay.sum(axis=1, keepdims=True)
    decay *= np.where(total > seed_cap, seed_cap / np.maximum(total, 1e-12), 1.0)
    gift = strength[:, None] * decay
    rows, cols = np.nonzero(ok)
    np.add.at(contribution, nbrs[rows, cols], gift[rows, cols])
    pairs = pd.DataFrame(
        {
            "seed": seed_index[rows],
            "neighbour": nbrs[rows, cols],
            "similarity": sims[rows, cols],
            "contribution": gift[rows, cols],
        }
    )
    return Expansion(np.clip(contribution, 0, 1), pairs)


def _neighbour_slots(nbrs: np.ndarray, seed_index: np.ndarray, group_codes: np.ndarray | None, k: int) -> np.ndarray:
    """(S, K') bool: the first k neighbours of each seed (search results sorted by
    similarity), skipping the seed itself, missing results (-1), and all but the
    nearest image of the seed's own group, which therefore counts once."""
    keep = (nbrs >= 0) & (nbrs != seed_index[:, None])
    if group_codes is not None:
        same = keep & (group_codes[np.where(nbrs >= 0, nbrs, 0)] == group_codes[seed_index][:, None])
        first = np.argmax(same, axis=1)
        has_same = same.any(axis=1)
        keep &= ~same
        keep[np.flatnonzero(has_same), first[has_same]] = True
    return keep & (np.cumsum(keep, axis=1) <= k)

