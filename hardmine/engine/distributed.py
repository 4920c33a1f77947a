"""PyTorch distributed (torchrun) glue: process group, rank-0-only work, gathers.

Launched with ``torchrun --nproc_per_node N -m hardmine ...`` (``WORLD_SIZE`` >
1 in the environment), :func:`setup_from_env` joins the process group: NCCL on
GPUs, gloo on CPUs. Rank 0 alone writes files, prints and runs faiss; the other
ranks wait at barriers and read what rank 0 wrote. In a single process every
helper here is a cheap no-op. The rank helpers themselves are torch-free
(:mod:`hardmine.core.ranks`, re-exported here) so that the run record can use them.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

from hardmine.core.ranks import active, barrier, broadcast, is_main, on_main, rank, world_size

__all__ = ["active", "all_reduce_sum", "barrier", "broadcast", "gather_rows", "is_main", "local_device", "on_main",
           "rank", "setup_from_env", "world_size"]

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
