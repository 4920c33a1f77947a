"""Thin callbacks over :class:`hardmine.HardMiner` for training frameworks (optional extras).

* :mod:`hardmine.integrations.lightning` (extra ``[lightning]``): ``HardMiningCallback`` for PyTorch Lightning.
* :mod:`hardmine.integrations.fastai` (extra ``[fastai]``): ``HardMiningCallback`` for a fastai ``Learner``.

Neither is imported by the core; each imports its framework when imported itself.
"""

from __future__ import annotations

from typing import Any

SUMMARY_STATS = ("n_seeds", "n_neighbours", "n_quarantined")


def mining_due(epochs_done: int, start: int, every: int) -> bool:
    """Whether a callback mines after ``epochs_done`` epochs: at ``start``, ``start + every``, ..."""
    return epochs_done >= start and (epochs_done - start) % every == 0


def mining_summary(epochs_done: int, result) -> dict[str, Any]:
    """One ``history`` row of a callback: the epoch and what the mining found."""
    return {"epoch": epochs_done} | {k: result.stats[k] for k in SUMMARY_STATS}
