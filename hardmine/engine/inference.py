"""Inference: devices, data loaders and one forward pass over a dataset.

:func:`predict` returns logits and embeddings of every sample in dataset order
(sharded across ranks under torchrun, gathered back in order). Training
(:mod:`hardmine.engine.train`) and scoring (:mod:`hardmine.engine.scoring`) both build on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from hardmine.core.errors import HardmineError
from hardmine.engine import distributed
from hardmine.record.config import PRECISIONS

Callback = Callable[[str, dict[str, Any]], None]


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU (a :class:`torch.device` is returned as it is)."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HardmineError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def default_workers(device: torch.device, image_size: int) -> int:
    """Loader workers: several on GPU machines; on CPU small images decode faster inline
    than through worker processes that compete with the model for the same cores."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if device.type == "cuda":
        return max(1, min(8, cpus - 1))
    return 0 if image_size <= 128 or cpus <= 2 else min(4, cpus - 1)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None: full fp32).

    ``auto``: bf16 on GPUs that run it natively (Ampere and later), fp16 on older
    GPUs (T4, V100 only emulate bf16, slowly; fp16 needs a GradScaler when
    training), fp32 on CPU and MPS, where autocast rarely pays.
    """
    if precision not in PRECISIONS:
        raise HardmineError(f"--precision {precision!r} is not valid; expected one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def make_loader(
    dataset, batch_size: int, device: torch.device, num_workers: int | None, sampler=None,
    image_size: int = 224, persistent: bool = False,
) -> DataLoader:  # fmt: skip
    """A loader over ``dataset``; with ``persistent``, its worker processes start once and serve every
    pass over it (a fit's epochs), instead of starting again at each pass."""
    workers = default_workers(device, image_size) if num_workers is None else num_workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=persistent and workers > 0,
    )


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    dataset,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    precision: str = "auto",
    num_workers: int | None = None,
    tta: bool = False,
    callback: Callback | None = None,
    embedding_sink: Callable[[np.ndarray, np.ndarray], None] | None = None,
    loader: DataLoader | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits and embeddings of every sample from one forward pass (no augmentation).

    ``precision`` is an autocast choice of :func:`autocast_dtype`. ``loader``: a loader over
    ``dataset`` made by :func:`make_loader` to use instead of a new one (a fit's validation passes
    reuse one, and its workers).

    Returns
    -------
    logits : (N, C) float32, in dataset order.
    embeddings : (N, D) float32, in dataset order (not normalised); None when
        ``embedding_sink(rows, embeddings)`` receives them batch by batch
        instead (e.g. to write a memory-mapped file, so memory does not grow with N).
    With ``tta``, the horizontally flipped image is scored too and logits and
    embeddings are averaged.
    """
    device = torch.device(device)
    model.eval().to(device)
    n = len(dataset)
    if n == 0:
        raise HardmineError("cannot predict on an empty dataset")
    shard = rank_shard(dataset)
    if loader is None:
        loader = make_loader(shard, batch_size, device, num_workers, image_size=getattr(dataset, "image_size", 224))
    dtype = autocast_dtype(precision, device)
    indices, logits_parts, emb_parts = [], [], []
    done = 0
    for images, _, index in loader:
        images = to_device(images, device)
        logits, emb = forward(model, images, device, dtype)
        if tta:
            flipped_logits, flipped_emb = forward(model, torch.flip(images, dims=[3]), device, dtype)
            logits, emb = (logits + flipped_logits) / 2, (emb + flipped_emb) / 2
        indices.append(index.numpy())
        logits_parts.append(logits.float().cpu().numpy())
        if embedding_sink is None:
            emb_parts.append(emb.float().cpu().numpy())
        else:
            embedding_sink(index.numpy(), emb.float().cpu().numpy())
        done += len(index)
        if callback:
            callback("batch", {"done": done, "total": len(shard), "phase": "predict"})
    index = np.concatenate(indices) if indices else np.empty(0, dtype=np.int64)
    logits_all = np.concatenate(logits_parts) if logits_parts else np.empty((0, 2), np.float32)
    if embedding_sink is not None:
        return distributed.gather_rows(index, logits_all, n=n)[0], None
    emb_all = np.concatenate(emb_parts) if emb_parts else np.empty((0, 0), np.float32)
    return distributed.gather_rows(index, logits_all, emb_all, n=n)


def rank_shard(dataset):
    """The rows of ``dataset`` this rank predicts: under torchrun rows rank, rank + world, ... (every row
    exactly once, no padding); the whole dataset otherwise. A loader handed to :func:`predict` is
    made over this."""
    if distributed.world_size() == 1:
        return dataset
    return Subset(dataset, range(distributed.rank(), len(dataset), distributed.world_size()))


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def forward(model, images, device: torch.device, dtype: torch.dtype | None):
    """``model(images)`` under autocast to ``dtype`` (None: fp32)."""
    with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        return model(images)
