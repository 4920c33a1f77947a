"""Atomic file writes: a temp file in the target folder, then ``os.replace``.

A reader never sees a half-written file, and a crash leaves the previous
version in place. Files get the permissions the process's umask gives a new
file (``mkstemp`` alone would make every result private, mode 0600). Reading
a damaged JSON file is one clear error naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hardmine.core.errors import HardmineError, damage_reason

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix + TMP_SUFFIX)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def held(lock: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on file ``lock`` (made if missing) for the ``with`` block, waiting for
    another process that holds it: a read-merge-write of a file shared by several commands (the answers
    kept beside a data set) sees every earlier write. Where ``fcntl`` does not exist (Windows), no lock."""
    Path(lock).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock


def _write_with(path: str | os.PathLike, writer: Callable[[Path], None], suffix: str = "") -> Path:
    with atomic_path(path, suffix) as tmp:
        writer(tmp)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (NaN becomes null) atomically."""
    text = json.dumps(_json_safe(obj), indent=2, sort_keys=False)
    return _write_with(path, lambda p: p.write_text(text + "\n"))


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a truncated or garbled one raises :class:`HardmineError` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HardmineError(f"{path} is damaged (not valid JSON: {str(exc).splitlines()[0]})") from None


def load_array(path: str | os.PathLike, mmap: bool = False) -> np.ndarray:
    """``np.load`` of a ``.npy`` file (memory-mapped with ``mmap``); a damaged one raises :class:`HardmineError`."""
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:
        raise HardmineError(f"{path} is damaged ({damage_reason(exc)}); `hardmine round --resume` on its "
                            "run redoes the step that wrote it") from None  # fmt: skip


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    try:  # Linux says it without changing it (no window in which another thread creates a file)
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)  # elsewhere it can only be read by setting it; set it straight back
        os.umask(mask)
        return mask


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> Path:
    """Write a table as CSV without the index, atomically, in chunks of rows."""
    return _write_with(path, lambda p: frame.to_csv(p, index=False, chunksize=100_000))


def write_parquet_if_available(path: str | os.PathLike, frame: pd.DataFrame) -> Path | None:
    """Also write ``frame`` as Parquet when pyarrow is installed (the ``parquet`` extra)."""
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        return None
    return _write_with(path, lambda p: frame.to_parquet(p, index=False, row_group_size=100_000), suffix=".parquet")


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _write_with(path, lambda p: p.write_bytes(data))


def copy_file(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy ``source``'s bytes to ``path`` atomically."""
    return _write_with(path, lambda p: shutil.copyfile(source, p), suffix=Path(source).suffix)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


FORMULA_START = ("=", "+", "-", "@")  # what a spreadsheet would run as a formula


def unguard_formula(value: str) -> str:
    """``value`` as written before the formula guard: our pages write ``'=x`` for a value ``=x`` (so a
    spreadsheet shows it as text); reading the file back takes the quote off again."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_START) else value

