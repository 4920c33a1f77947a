"""PyTorch distributed (torchrun) glue: process group, rank-0-only work, gathers.

Launched with ``torchrun --nproc_per_node N -m hardmine ...`` (``WORLD_SIZE`` >
1 in the environment), :func:`setup_from_env` joins the process group: NCCL on
GPUs, gloo on CPUs. Rank 0 alone writes files, prints and runs faiss; the other
ranks wait at barriers and read what rank 0 wrote. In a single process every
helper here is a cheap no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def setup_from_env() -> bool:
    """Join the process group torchrun describes; True when running distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or active():
        return active()
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


def local_device(name: str) -> str:
    """On CUDA under torchrun each rank uses its own GPU (LOCAL_RANK)."""
    if active() and name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return name


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only; every rank returns its result or raises its error."""
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
            error = exc
    if not active():
        if error is not None:
            raise error
        return result
    result, error = broadcast((result, error))
    if error is not None:
        raise error
    return result


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """Element-wise sum of a numpy array over ranks (float64)."""
    if not active():
        return array
    tensor = torch.as_tensor(np.ascontiguousarray(array, dtype=np.float64))
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()


def gather_rows(index: np.ndarray, *arrays: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Assemble per-rank rows into full (n, ...) arrays in original order on every rank.

    ``index`` holds the dataset rows this rank computed; every row must be
    computed by exactly one rank (no padding duplicates, none missing).
    """
    if active():
        parts = [None] * world_size()
        dist.all_gather_object(parts, (index, *arrays))
    else:
        parts = [(index, *arrays)]
    all_index = np.concatenate([p[0] for p in parts])
    if len(all_index) != n or len(np.unique(all_index)) != n:
        raise RuntimeError(
            f"distributed gather got {len(all_index)} rows ({len(np.unique(all_index))} distinct) for {n}"
        )
    out = []
    for position in range(len(arrays)):
        first = parts[0][position + 1]
        full = np.empty((n, *first.shape[1:]), dtype=first.dtype)
        full[all_index] = np.concatenate([p[position + 1] for p in parts])
        out.append(full)
    return tuple(out)
