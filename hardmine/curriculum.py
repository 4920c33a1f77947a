"""Curriculum weights from mining results, and the sampler that applies them.

``weights`` is numpy in, numpy out. :class:`CurriculumSampler` is a
``torch.utils.data.Sampler`` that draws indices with probability proportional
to the weights: seeded, reproducible per epoch (``set_epoch``), and DDP-aware
(every rank draws the same sequence from ``seed + epoch`` and takes a disjoint
stride of it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Sampler


@dataclass
class CurriculumStats:
    """Summary of a weight vector: effective class ratio and effective sample size."""

    effective_pos_share: float  # share of draws that are positive under the weights
    effective_class_ratio: float  # positive draws per negative draw
    effective_sample_size: float  # Kish ESS = (sum w)^2 / sum w^2
    max_weight: float


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
        raise ValueError(f"max_weight={max_weight} must be >= 1 (it is a multiple of the mean)")
    if not 0 <= ema < 1:
        raise ValueError(f"ema={ema} must be in [0, 1)")
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        hard = np.where(exclude, 0.0, hard)
        neighbour = np.where(exclude, 0.0, neighbour)
    base = class_balance_weights(labels) if balance else np.ones(n)
    w = base * (1 + alpha * hard + beta * neighbour)
    w = _normalise_capped(w, max_weight)
    if previous is not None:
        previous = _vector(previous, n, "previous")
        w = _normalise_capped(ema * previous + (1 - ema) * w, max_weight)
    return w


def _vector(values: np.ndarray | None, n: int, name: str) -> np.ndarray:
    if values is None:
        return np.zeros(n)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n,):
        raise ValueError(f"{name} has shape {values.shape}; expected ({n},) like labels")
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
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
        effective_pos_share=float(pos),
        effective_class_ratio=float(pos / (1 - pos)) if pos < 1 else float("inf"),
        effective_sample_size=float(w.sum() ** 2 / (w**2).sum()),
        max_weight=float(w.max()),
    )


class CurriculumSampler(Sampler[int]):
    """Draw indices with probability proportional to ``weights``, with replacement.

    Parameters
    ----------
    weights : (N,) non-negative sample weights.
    num_samples : draws per epoch over all replicas (default N).
    seed : base seed; epoch ``e`` uses ``seed + e``.
    num_replicas, rank : for DDP. Default: from ``torch.distributed`` when it is
        initialised, else 1 and 0. Every rank draws the same sequence and takes
        ``sequence[rank::num_replicas]``; the sequence is padded (wrapping) so
        all ranks get the same count.
    """

    def __init__(
        self,
        weights: np.ndarray,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        if num_replicas is None or rank is None:
            dist = torch.distributed
            ready = dist.is_available() and dist.is_initialized()
            num_replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if ready else 1)
            rank = rank if rank is not None else (dist.get_rank() if ready else 0)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} must be in [0, {num_replicas})")
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self.update_weights(weights)
        self.total = int(num_samples) if num_samples is not None else len(self.weights)
        self.per_replica = -(-self.total // self.num_replicas)

    def update_weights(self, weights: np.ndarray) -> None:
        """Replace the weights (e.g. after a mining round); takes effect next ``__iter__``."""
        w = np.array(weights, dtype=np.float64)  # a copy: the caller's array may be read-only
        if w.ndim != 1 or len(w) == 0:
            raise ValueError(f"weights must be a non-empty 1-d array; got shape {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        self.weights = torch.as_tensor(w, dtype=torch.float64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def full_sequence(self) -> torch.Tensor:
        """The whole epoch's draw (before the DDP stride), padded to a multiple of replicas."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        seq = torch.multinomial(self.weights, self.total, replacement=True, generator=generator)
        padding = self.per_replica * self.num_replicas - self.total
        if padding:
            seq = torch.cat([seq, seq[:padding]])
        return seq

    def __iter__(self) -> Iterator[int]:
        return iter(self.full_sequence()[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.per_replica
