"""One writer per run folder: an exclusive lock held for the life of the process.

Two ``hardmine round`` on the same ``--out`` would interleave their steps and
leave a manifest that matches neither. :func:`lock_run` takes an advisory
``flock`` on ``RUN/.hardmine.lock`` and keeps it until the process exits; the
operating system drops it when the holder dies, so a killed run never leaves a
stale lock behind. The lock file records who holds it, so a refused process can
say so. Under torchrun only rank 0 locks. Where ``fcntl`` does not exist
(Windows) runs are not locked.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from hardmine.core.errors import HardmineError

LOCK_FILE = ".hardmine.lock"
_held: dict[Path, int] = {}  # resolved run folder -> open descriptor holding its lock


def lock_run(root: str | os.PathLike) -> None:
    """Take (or keep) the exclusive lock on run folder ``root``; it must exist.

    Re-entrant within a process. Raises :class:`HardmineError` naming the
    holder when another process has it.
    """
    from hardmine.core import ranks

    key = Path(root).resolve()
    if key in _held or not ranks.is_main():
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise HardmineError(f"{key} is in use by {holder}; wait for it to finish or choose another --out") from None
    os.ftruncate(fd, 0)
    command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} ({command}, since {started})\n".encode(), 0)
    _held[key] = fd


def unlock_run(root: str | os.PathLike) -> None:
    """Release the lock on ``root`` if this process holds it (the process exiting does the same)."""
    fd = _held.pop(Path(root).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock
