"""The torch ``Sampler`` that draws training indices by curriculum weights.

:class:`CurriculumSampler` draws indices with probability proportional to the
weights: seeded, reproducible per epoch, and DDP-aware (every rank draws the
same sequence from ``seed + epoch`` and takes a disjoint stride of it). Each
pass over it moves to the next epoch by itself, so a loop that never calls
``set_epoch`` still sees a new order every epoch; a loop that calls
``set_epoch(e)`` (as DDP loops do) gets exactly epoch ``e``. The weights
themselves come from :mod:`hardmine.core.curriculum` (numpy).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from hardmine.core.errors import HardmineError
from hardmine.engine import distributed


class CurriculumSampler(Sampler[int]):
    """Draw indices with probability proportional to ``weights``, with replacement.

    Parameters
    ----------
    weights : (N,) non-negative sample weights.
    num_samples : draws per epoch over all replicas (default N).
    seed : base seed; epoch ``e`` uses ``seed + e``.
    num_replicas, rank : for DDP. Default: from ``torch.distributed`` when a pass
        is drawn (so a sampler made before the process group joins it), else 1
        and 0. Every rank draws the same sequence and takes
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
        # None: asked of torch.distributed each time a pass is drawn, so a sampler built before the
        # process group exists (Lightning's spawn, a DataLoader made early) still takes its own stride.
        self._num_replicas, self._rank = num_replicas, rank
        self._check_rank()
        self.seed = int(seed)
        self.epoch = 0
        self._epoch_set = False  # set_epoch called since the last pass
        self._passes = 0
        self.update_weights(weights)
        self.set_num_samples(num_samples)

    @property
    def num_replicas(self) -> int:
        return int(self._num_replicas) if self._num_replicas is not None else distributed.world_size()

    @property
    def rank(self) -> int:
        return int(self._rank) if self._rank is not None else distributed.rank()

    @property
    def per_replica(self) -> int:
        return -(-self.total // self.num_replicas)

    def _check_rank(self) -> None:
        if not 0 <= self.rank < self.num_replicas:
            raise HardmineError(f"rank {self.rank} must be in [0, {self.num_replicas})")

    def set_num_samples(self, num_samples: int | None) -> None:
        """Draws per epoch over all replicas (None: one per sample)."""
        total = int(num_samples) if num_samples is not None else len(self.weights)
        if total < 1:
            raise HardmineError(f"num_samples must be at least 1; got {num_samples}")
        self.total = total

    def update_weights(self, weights: np.ndarray) -> None:
        """Replace the weights (e.g. after a mining round); takes effect next ``__iter__``."""
        w = np.array(weights, dtype=np.float64)  # a copy: the caller's array may be read-only
        if w.ndim != 1 or len(w) == 0:
            raise HardmineError(f"weights must be a non-empty 1-d array; got shape {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise HardmineError("weights must be finite, non-negative and not all zero")
        self.weights = torch.as_tensor(w, dtype=torch.float64)

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s order on the next pass (every DDP rank must call it alike)."""
        self.epoch = int(epoch)
        self._epoch_set = True

    @property
    def next_epoch(self) -> int:
        """The epoch the next pass draws (what a resumed loop passes to ``set_epoch``)."""
        return self.epoch if self._epoch_set or not self._passes else self.epoch + 1

    def full_sequence(self) -> torch.Tensor:
        """The whole epoch's draw (before the DDP stride), padded to a multiple of replicas."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        seq = torch.multinomial(self.weights, self.total, replacement=True, generator=generator)
        padding = self.per_replica * self.num_replicas - self.total
        if padding:
            seq = torch.cat([seq, seq[:padding]])
        return seq

    def __iter__(self) -> Iterator[int]:
        self._check_rank()
        if self._passes and not self._epoch_set:
            self.epoch += 1  # nobody called set_epoch since the last pass: move on by ourselves
        self._epoch_set = False
        self._passes += 1
        return iter(self.full_sequence()[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.per_replica


class EpochShuffle(Sampler[int]):
    """Every index once per epoch, in the order ``torch.randperm`` draws from ``seed + epoch``; like
    :class:`~hardmine.engine.sampler.CurriculumSampler`, it follows ``set_epoch``, so one loader serves
    every epoch."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist())

    def __len__(self) -> int:
        return self.n


class SeededBatches(Sampler[tuple[int, int]]):
    """Pairs each drawn index with its epoch, so a worker process (started once per fit) seeds that
    sample's augmentation by (epoch, index): the same draws with or without workers, resumed or not."""

    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((int(i), epoch) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)
