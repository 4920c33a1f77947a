"""Image files: finding them, checking and decoding them, and keeping every path inside its data root.

Shared by the data sources (:mod:`hardmine.data.sources`), ``hardmine predict``
and the engine's dataset. Numpy, pandas and PIL only.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from hardmine.core.errors import DataError, HardmineError, warn
from hardmine.core.io import read_json, write_json

# what PIL decodes and cameras, scanners and slide exports write; every data source and `predict` read these
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
AUGMENTS = ("dermoscopy", "light", "none")  # training augmentations by name (hardmine.engine.datasets)


def image_inputs(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """Image paths from image files, folders (searched recursively) and CSVs with a ``path`` column.

    Relative CSV paths are relative to the CSV's folder and may not leave it;
    absolute ones are taken as given (a list of files the user names). The order
    is that of ``inputs`` (folders sorted). Raises :class:`DataError` naming an
    input that does not exist, is not an image, or yields no image.
    """
    found: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = sorted(str(p) for p in image_files_below(path))
            if not images:
                raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
            found += images
        elif path.is_file() and path.suffix.lower() == ".csv":
            frame = read_csv(path)
            require_columns(frame, ("path",), path)
            # absolute paths: the user's own list of files, named in full
            found += [str(p) for p in csv_paths(path, frame["path"], allow_absolute=True)]
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found.append(str(path))
        elif path.exists():
            raise DataError(f"{path} is not an image ({', '.join(IMAGE_SUFFIXES)}), a folder or a CSV of paths")
        else:
            raise DataError(f"{path} does not exist")
    missing = missing_files(found)
    if missing:
        raise DataError(f"{len(missing)} listed image(s) not found, first: {missing[0]}")
    return found


def missing_files(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The paths of ``paths`` that are not regular files. A path that cannot be looked at for lack of
    permission is not "missing": it is one :class:`DataError` naming it, and what would fix it."""
    missing = []
    for path in paths:
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                missing.append(str(path))
        except PermissionError:
            raise DataError(f"cannot read {path}: permission denied; give read access to it and to its folders "
                            "(chmod -R u+rX on the data folder)") from None  # fmt: skip
        except (OSError, ValueError):  # not there, a file where a folder should be, a NUL byte
            missing.append(str(path))
    return missing


def walk_files(root: str | os.PathLike):
    """``os.walk(root)`` that refuses a folder it cannot read (:class:`DataError` naming it), where
    ``os.walk`` would skip it in silence and its images would read as "not found"."""

    def refuse(exc: OSError) -> None:
        if isinstance(exc, PermissionError):
            raise DataError(f"cannot read folder {exc.filename}: permission denied; give read access to it "
                            "(chmod -R u+rX on the data folder)") from None  # fmt: skip
        raise DataError(f"cannot read folder {exc.filename}: {exc.strerror or exc}") from None

    return os.walk(root, onerror=refuse)


def image_files_below(root: Path) -> list[Path]:
    """Every image file (``IMAGE_SUFFIXES``) below folder ``root``, sub-folders included, sorted; hidden
    files and folders are left out and symlinked folders not followed (as ``Path.rglob``), and a folder
    that cannot be read is refused (see :func:`walk_files`)."""
    found = []
    for dirpath, dirnames, filenames in walk_files(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, name) for name in filenames
                  if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES]  # fmt: skip
    return sorted(p for p in found if p.is_file())  # a FIFO named like an image is not one


def find_unreadable(paths: Sequence[str] | pd.Series, cache_for: str | os.PathLike | None = None) -> list[str]:
    """Return the paths that PIL cannot decode (checked at reduced scale for speed); :func:`why_unreadable`
    says why one is.

    ``cache_for``: a data folder whose decodable images are remembered (by path and :func:`file_stamp`,
    in :func:`verified_cache_path`), so that the next run on it decodes only the files that are new or
    changed since. A cache that cannot be read or written, or fails its own checksum, is ignored.
    """
    cache_path = verified_cache_path(cache_for) if cache_for is not None else None
    known = _read_verified(cache_path)
    verified, bad = {}, []
    for path in map(str, paths):
        stamp = file_stamp(path)
        if stamp is not None and known.get(path) == stamp:
            verified[path] = stamp
        elif why_unreadable(path) is None:
            if stamp is not None:
                verified[path] = stamp
        else:
            bad.append(path)
    if cache_path is not None and verified != known:
        try:
            entries = {**known, **verified}
            write_json(cache_path, {"verified": entries, "sha256": _entries_digest(entries)})
        except (OSError, HardmineError):
            pass  # a read-only home: verified again next time
    return bad


def verified_cache_path(data: str | os.PathLike) -> Path:
    """Where the decodable images of data folder ``data`` are remembered: ``$HARDMINE_CACHE`` (default
    ``$XDG_CACHE_HOME/hardmine``, else ``~/.cache/hardmine``) ``/verified/<hash of the folder>.json``."""
    base = os.environ.get("HARDMINE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache",
                                                    "hardmine")  # fmt: skip
    key = hashlib.sha1(str(Path(data).resolve()).encode()).hexdigest()[:16]
    return Path(base) / "verified" / f"{key}.json"


def file_stamp(path: str | os.PathLike) -> list[int] | None:
    """What changes whenever a file's bytes may have: size, modification and status-change times, inode
    (None when it cannot be read). A rewrite with the old size and a restored modification time still
    changes the status-change time, which no user can set back."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def _entries_digest(entries: dict) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def _read_verified(path: Path | None) -> dict[str, list[int]]:
    """The remembered stamps, or nothing when the cache is missing, unreadable or fails its checksum."""
    if path is None or not path.is_file():
        return {}
    try:
        saved = read_json(path)
        verified = saved.get("verified", {})
    except (HardmineError, AttributeError):
        return {}
    if not isinstance(verified, dict) or saved.get("sha256") != _entries_digest(verified):
        return {}  # damaged or edited by hand: every image is decoded again
    return verified


def why_unreadable(path: str | os.PathLike) -> str | None:
    """Why PIL cannot decode the image at ``path`` (None when it can), in one line."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (32, 32))  # JPEG decodes at 1/8 scale: fast, still full read
            img.load()
    except Exception as exc:  # noqa: BLE001 - any decoder failure means unreadable
        return (str(exc).splitlines() or [type(exc).__name__])[0][:160]
    return None


def load_image(path: str | os.PathLike, size: int | None = None):
    """Open an image as RGB, decoding JPEGs at a reduced scale when ``size`` allows."""
    from PIL import Image

    try:
        img = Image.open(path)
        if size is not None:
            img.draft("RGB", (size, size))
        if img.mode.startswith("I"):  # 16- or 32-bit grey: convert("RGB") would clip nearly every pixel to white
            import numpy as np

            grey = np.asarray(img, dtype=np.float64)
            top = 65535.0 if img.mode.startswith("I;16") else max(float(grey.max()), 1.0)
            img = Image.fromarray(np.clip(grey / top * 255, 0, 255).astype(np.uint8))
        return img.convert("RGB")
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read image {path}: {exc}") from None


def data_root(data: str | os.PathLike) -> Path:
    """The folder a data path stands for: the path itself when a folder, else (a manifest CSV) its folder."""
    path = Path(data)
    return path if path.is_dir() else path.parent


def resolve_inside(root: Path, relative: str) -> Path:
    """Join ``relative`` to ``root`` and refuse results outside ``root``."""
    root_resolved = root.resolve()
    if "\x00" in str(relative):
        raise DataError(f"path {relative!r} holds a NUL byte; expected a file name")
    candidate = (root_resolved / relative).resolve()
    if not candidate.is_relative_to(root_resolved):
        raise DataError(f"path {relative!r} resolves outside the data root {root_resolved}")
    return candidate


MAX_CSV_BYTES = 2**30  # a metadata, pool or answers table; more is not a CSV hardmine should read into memory


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV as strings (no NA guessing); an unreadable one is one :class:`DataError` naming it, and so is
    a path that is not a regular file (a device such as ``/dev/zero``, a pipe) or a file over 1 GiB."""
    if os.path.exists(path) and not os.path.isfile(path):
        raise DataError(f"{path} is not a regular file; expected a CSV file")
    if os.path.isfile(path) and os.path.getsize(path) > MAX_CSV_BYTES:
        raise DataError(f"{path} holds {os.path.getsize(path)} bytes; a CSV hardmine reads is at most "
                        f"{MAX_CSV_BYTES} bytes")  # fmt: skip
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read CSV {path}: {exc}".splitlines()[0]) from None


def csv_paths(csv_path: Path, paths: Sequence[str], allow_absolute: bool = False) -> list[Path]:
    """A CSV's paths, relative to its folder and never outside it (absolute ones as given when allowed)."""
    base = csv_path.parent.resolve()
    resolved = []
    for row, rel in enumerate(paths, start=2):  # row 1 is the header
        if allow_absolute and Path(rel).is_absolute():
            resolved.append(Path(rel))
            continue
        try:
            resolved.append(resolve_inside(base, rel))
        except DataError as exc:
            raise DataError(f"{csv_path} row {row}: {exc}") from None
    return resolved


def require_columns(frame: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    """Raise :class:`DataError` naming the columns of ``columns`` that ``frame`` (read from ``path``) lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: required column(s) {', '.join(missing)} missing; found {', '.join(frame.columns) or 'none'}"
        )


def index_images(root: Path, suffixes: Sequence[str]) -> dict[str, str]:
    """Map file stem -> path for every image below ``root`` in one walk.

    Symlinked folders are not followed, and a symlinked image that points
    outside the root is refused, so nothing outside the root is read. Two
    different images with the same stem are refused (the metadata could not tell
    them apart); a second copy of the same size (some downloads ship each image
    folder twice) is skipped with a warning.
    """
    base = root.resolve()
    found: dict[str, str] = {}
    copies: list[str] = []
    for dirpath, dirnames, filenames in walk_files(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # pruned and in a stable order
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in suffixes:
                continue
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                check_inside(base, Path(path))
            if not os.path.isfile(path):
                continue  # a FIFO or device named like an image: reading it would block or make no sense
            if stem in found:
                if os.path.getsize(path) != os.path.getsize(found[stem]):
                    raise DataError(f"two different images named {stem}: {found[stem]} and {path}; "
                                    "image ids must be unique")  # fmt: skip
                copies.append(path)
                continue
            found[stem] = path
    if copies:
        warn(f"{len(copies)} image(s) found twice (same name and size), first: {copies[0]}; the first copy is used")
    return found


def check_inside(base: Path, path: Path) -> None:
    """Refuse ``path`` when it (through a symlink) lies outside the resolved data root ``base``."""
    if path.is_symlink() and not path.resolve().is_relative_to(base):
        raise DataError(f"{path} is a symlink to {path.resolve()}, outside the data root {base}; "
                        "copy the file into the data folder instead")  # fmt: skip
