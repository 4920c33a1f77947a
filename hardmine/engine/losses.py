"""Per-sample losses and class weights for imbalanced binary classification.

All losses return one value per sample (``reduction="none"`` semantics) so that
curriculum weights can multiply them; :func:`weighted_mean` reduces a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hardmine.core.errors import HardmineError
from hardmine.record.config import CLASS_WEIGHTING, LOSSES


def class_weights(counts: Sequence[int], method: str = "inverse", beta: float = 0.999) -> np.ndarray:
    """Per-class weights from class counts, scaled so the sample-weighted mean is 1.

    ``inverse``: w_c proportional to 1 / n_c. ``effective``: the "effective
    number of samples" weighting of Cui et al. (2019), w_c proportional to
    (1 - beta) / (1 - beta ** n_c).

    Returns
    -------
    (C,) float array; ``sum(counts * w) == sum(counts)``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if (counts <= 0).any():
        raise HardmineError(f"every class needs samples to weight it; counts are {counts.tolist()}")
    if method not in CLASS_WEIGHTS:
        raise HardmineError(f"unknown class weighting {method!r}; expected {', '.join(CLASS_WEIGHTING)}")
    raw = CLASS_WEIGHTS[method](counts, beta)
    return raw * counts.sum() / (counts * raw).sum()


def _inverse(counts: np.ndarray, beta: float) -> np.ndarray:
    return 1.0 / counts


def _effective(counts: np.ndarray, beta: float) -> np.ndarray:
    if not 0 <= beta < 1:
        raise HardmineError(f"beta={beta} must be in [0, 1)")
    return (1.0 - beta) / (1.0 - np.power(beta, counts))


# --class-weighting name -> raw (C,) weights from (C,) counts and beta, before scaling to a weighted mean of 1
CLASS_WEIGHTS = {"inverse": _inverse, "effective": _effective}


def per_sample_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    kind: str = "ce",
    class_weight: torch.Tensor | None = None,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Loss of each sample, shape (B,).

    ``ce``: cross-entropy. ``weighted-ce``: ``class_weight[y] * ce``. ``focal``:
    ``alpha_y * (1 - p_y) ** gamma * ce`` (Lin et al. 2017) with ``alpha =
    class_weight`` when given.
    """
    if kind not in LOSSES:
        raise HardmineError(f"unknown loss {kind!r}; expected one of {', '.join(LOSSES)}")
    log_probs = F.log_softmax(logits.float(), dim=1)
    log_p_true = log_probs.gather(1, targets.view(-1, 1)).squeeze(1)
    loss = -log_p_true
    if kind == "focal":
        loss = (1 - log_p_true.exp()).clamp(min=0) ** gamma * loss
    if kind != "ce" and class_weight is not None:
        loss = class_weight.to(loss.device, loss.dtype)[targets] * loss
    return loss


def weighted_mean(loss: torch.Tensor, sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of per-sample losses, each scaled by ``sample_weight`` (mean-1 weights)."""
    if sample_weight is None:
        return loss.mean()
    return (loss * sample_weight.to(loss.device, loss.dtype)).sum() / loss.shape[0]
