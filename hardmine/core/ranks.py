"""Which process this is under torchrun, without importing torch.

A process group exists only once :mod:`torch.distributed` has been initialised,
which needs torch imported first; so while torch is not in ``sys.modules`` this
is a single process and every helper is a no-op. That keeps the run record,
the views and the numpy core torch-free while they still write on rank 0 only
and wait at barriers under torchrun. Joining the group and the tensor
collectives live in :mod:`hardmine.engine.distributed`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _dist() -> Any | None:
    """:mod:`torch.distributed` when a process group is initialised, else None (never imports torch)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def active() -> bool:
    return _dist() is not None


def world_size() -> int:
    dist = _dist()
    return dist.get_world_size() if dist else 1


def rank() -> int:
    dist = _dist()
    return dist.get_rank() if dist else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    dist = _dist()
    if dist:
        dist.barrier()


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` on every rank."""
    dist = _dist()
    if not dist:
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
