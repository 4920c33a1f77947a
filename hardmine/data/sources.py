"""Data sources, the sample table, image loading and grouped splits.

Three sources become one sample table (a :class:`pandas.DataFrame`) with the
columns ``id, path, label, group, class_name`` plus any extra metadata columns:

* ``ham10000``: a folder with ``HAM10000_metadata.csv`` and ``<image_id>.jpg``
  files anywhere below it; group = ``lesion_id``.
* ``manifest``: a CSV ``path,label[,group]``, paths relative to the CSV's folder.
* ``folders``: ``root/<class>/*.jpg|png``; group = file stem unless a manifest
  says otherwise.

``label`` is 1 for the positive (costly, usually minority) class and 0 for the
negative class. Rows of classes in neither set are left out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hardmine.core.errors import DataError, warn

HAM_METADATA = "HAM10000_metadata.csv"
HAM_DX = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
AUGMENTS = ("dermoscopy", "light", "none")  # training augmentations by name (hardmine.engine.datasets)
SOURCES = ("auto", "ham10000", "manifest", "folders")
MANIFEST_NAMES = ("manifest.csv", "labels.csv")
HAM_FOLDER = re.compile(r"HAM10000_images", re.IGNORECASE)  # the release's image folders, never classes
_SHOW = 5  # how many offending ids an error message lists


@dataclass
class LoadReport:
    """What loading found, for ``check-data`` and logs."""

    source: str
    root: Path
    positive: list[str]
    negative: list[str]
    n_rows: int = 0
    n_excluded: int = 0
    bad_files: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- public


def load_samples(
    root: str | os.PathLike,
    source: str = "auto",
    positive: str | Sequence[str] | None = None,
    negative: str | Sequence[str] | None = None,
    metadata: str | os.PathLike | None = None,
    verify_images: bool = False,
    skip_bad: bool = False,
) -> tuple[pd.DataFrame, LoadReport]:
    """Read a data source into the sample table.

    Parameters
    ----------
    root
        Data folder (or, for ``manifest``, the manifest CSV or its folder).
    source
        One of ``auto, ham10000, manifest, folders``.
    positive, negative
        Class names (or comma lists). ``negative="rest"`` means every class not
        positive. Defaults: ``mel``/``nv`` for HAM10000; for other sources ``1``/``0``
        when labels are 0/1, else the rarer of two classes is positive.
    metadata
        HAM10000 metadata CSV when it is not ``root/HAM10000_metadata.csv``.
    verify_images
        Decode every image (at reduced scale) to catch unreadable files.
    skip_bad
        With ``verify_images``, drop unreadable files instead of failing.

    Returns
    -------
    table, report
        ``table`` has one row per image: ``id, path, label (0/1), group,
        class_name`` and extra metadata columns, index ``0..N-1``.
    """
    if source not in SOURCES:
        raise DataError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    root_path = Path(root)
    if not root_path.exists():
        raise DataError(f"data path {root_path} does not exist")
    if source == "auto":
        source = detect_source(root_path, metadata)
    if source == "ham10000":
        raw, base = _read_ham10000(root_path, metadata)
    elif source == "manifest":
        raw, base = _read_manifest(root_path)
    else:
        raw, base = _read_folders(root_path)
    table, report = _apply_task(raw, source, base, positive, negative)
    if verify_images:
        bad = find_unreadable(table["path"])
        if bad:
            if not skip_bad:
                raise DataError(f"{len(bad)} unreadable image(s), first: {bad[0]} (use --skip-bad to drop them)")
            table = table[~table["path"].isin(set(bad))].reset_index(drop=True)
            report.bad_files = bad
            _check_both_classes(table, report.positive, report.negative)
    return table, report


def detect_source(root: Path, metadata: str | os.PathLike | None = None) -> str:
    """Guess the source kind of ``root``: HAM10000, CSV manifest or class folders."""
    if metadata is not None or (root.is_dir() and (root / HAM_METADATA).exists()):
        return "ham10000"
    if root.is_file() and root.suffix.lower() == ".csv":
        return "manifest"
    if root.is_dir():
        if any((root / name).exists() for name in MANIFEST_NAMES):
            return "manifest"
        if any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
            return "folders"
    raise DataError(
        f"cannot tell the data source of {root}: expected {HAM_METADATA}, a manifest CSV "
        f"({' or '.join(MANIFEST_NAMES)}) or class sub-folders"
    )


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
            images = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))  # fmt: skip
            if not images:
                raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
            found += images
        elif path.is_file() and path.suffix.lower() == ".csv":
            frame = _read_csv(path)
            _require_columns(frame, ("path",), path)
            # absolute paths: the user's own list of files, named in full
            found += [str(p) for p in _csv_paths(path, frame["path"], allow_absolute=True)]
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found.append(str(path))
        elif path.exists():
            raise DataError(f"{path} is not an image ({', '.join(IMAGE_SUFFIXES)}), a folder or a CSV of paths")
        else:
            raise DataError(f"{path} does not exist")
    missing = [p for p in found if not Path(p).is_file()]
    if missing:
        raise DataError(f"{len(missing)} listed image(s) not found, first: {missing[0]}")
    return found


def find_unreadable(paths: Sequence[str] | pd.Series) -> list[str]:
    """Return the paths that PIL cannot decode (checked at reduced scale for speed)."""
    from PIL import Image

    bad = []
    for path in paths:
        try:
            with Image.open(path) as img:
                img.draft("RGB", (32, 32))  # JPEG decodes at 1/8 scale: fast, still full read
                img.load()
        except Exception:  # noqa: BLE001 - any decoder failure means unreadable
            bad.append(str(path))
    return bad


def load_image(path: str | os.PathLike, size: int | None = None):
    """Open an image as RGB, decoding JPEGs at a reduced scale when ``size`` allows."""
    from PIL import Image

    try:
        img = Image.open(path)
        if size is not None:
            img.draft("RGB", (size, size))
        return img.convert("RGB")
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read image {path}: {exc}") from None


def resolve_inside(root: Path, relative: str) -> Path:
    """Join ``relative`` to ``root`` and refuse results outside ``root``."""
    root_resolved = root.resolve()
    candidate = (root_resolved / relative).resolve()
    if not candidate.is_relative_to(root_resolved):
        raise DataError(f"path {relative!r} resolves outside the data root {root_resolved}")
    return candidate


# --------------------------------------------------------------------------- readers


def _read_ham10000(root: Path, metadata: str | os.PathLike | None) -> tuple[pd.DataFrame, Path]:
    meta_path = Path(metadata) if metadata is not None else root / HAM_METADATA
    if not meta_path.is_file():
        raise DataError(f"metadata file {meta_path} not found (expected {HAM_METADATA})")
    frame = _read_csv(meta_path)
    _require_columns(frame, ("lesion_id", "image_id", "dx"), meta_path)
    frame = frame.astype({"image_id": str, "lesion_id": str, "dx": str})
    unknown = sorted(set(frame["dx"]) - set(HAM_DX))
    if unknown:
        raise DataError(f"{meta_path}: unknown dx value(s) {', '.join(unknown)}; expected {', '.join(HAM_DX)}")
    bad_ids = frame["image_id"][frame["image_id"].str.contains(r"[/\\]|^\.\.?$|\x00", regex=True)]
    if len(bad_ids):
        raise DataError(f"{meta_path}: image_id {bad_ids.iloc[0]!r} would resolve outside the data root")
    image_root = root if root.is_dir() else meta_path.parent
    found = _index_images(image_root, suffixes=(".jpg", ".jpeg"))
    paths = frame["image_id"].map(found)
    missing = frame["image_id"][paths.isna()].tolist()
    if missing:
        raise DataError(
            f"{len(missing)} image(s) listed in {meta_path.name} not found under {image_root}, "
            f"first: {', '.join(missing[:_SHOW])}"
        )
    extra = [c for c in frame.columns if c not in ("image_id", "lesion_id", "dx")]
    table = pd.DataFrame(
        {
            "id": frame["image_id"],
            "path": paths.astype(str),
            "class_name": frame["dx"],
            "group": frame["lesion_id"],
        }
    )
    for col in extra:
        table[col] = frame[col].values
    return table, image_root


def _read_manifest(root: Path) -> tuple[pd.DataFrame, Path]:
    if root.is_dir():
        candidates = [root / n for n in MANIFEST_NAMES if (root / n).exists()]
        if not candidates:
            raise DataError(f"no manifest ({' or '.join(MANIFEST_NAMES)}) in {root}")
        csv_path = candidates[0]
    else:
        csv_path = root
    frame = _read_csv(csv_path)
    _require_columns(frame, ("path", "label"), csv_path)
    base = csv_path.parent.resolve()
    paths = _csv_paths(csv_path, frame["path"].astype(str))
    exists = np.array([p.is_file() for p in paths])
    if not exists.all():
        missing = [str(frame["path"].iloc[i]) for i in np.flatnonzero(~exists)]
        raise DataError(f"{len(missing)} image(s) listed in {csv_path} not found, first: {', '.join(missing[:_SHOW])}")
    rel_ids = frame["path"].astype(str).map(lambda s: Path(s).with_suffix("").as_posix())
    groups = frame["group"].astype(str) if "group" in frame else rel_ids
    table = pd.DataFrame(
        {
            "id": rel_ids,
            "path": [str(p) for p in paths],
            "class_name": frame["label"].astype(str),
            "group": groups,
        }
    )
    for col in frame.columns:
        if col not in ("path", "label", "group"):
            table[col] = frame[col].values
    return table, base


def _read_folders(root: Path) -> tuple[pd.DataFrame, Path]:
    if not root.is_dir():
        raise DataError(f"{root} is a file; the folders source expects a folder with one sub-folder per class")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    release = [p.name for p in class_dirs if HAM_FOLDER.match(p.name)]
    if release:
        raise DataError(f"{HAM_METADATA} not found in {root}: {', '.join(release)} are HAM10000 image folders, "
                        f"not classes; put {HAM_METADATA} there or pass --metadata")  # fmt: skip
    base = root.resolve()
    rows = []
    for class_dir in class_dirs:
        _check_inside(base, class_dir)
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                _check_inside(base, path)
                rows.append((f"{class_dir.name}/{path.stem}", str(path), class_dir.name, path.stem))
    if not rows:
        raise DataError(f"no images (*.jpg, *.png) in the class folders of {root}")
    table = pd.DataFrame(rows, columns=["id", "path", "class_name", "group"])
    return table, base


# --------------------------------------------------------------------------- helpers


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read CSV {path}: {exc}".splitlines()[0]) from None


def _csv_paths(csv_path: Path, paths: Sequence[str], allow_absolute: bool = False) -> list[Path]:
    """A CSV's paths, relative to its folder and never outside it (absolute ones as given when allowed)."""
    base = csv_path.parent.resolve()
    resolved = []
    for row, rel in enumerate(paths, start=2):  # row 1 is the header
        if allow_absolute and Path(rel).is_absolute():
            resolved.append(Path(rel))
            continue
        try:
            resolved.append(resolve_inside(base, rel))
        except DataError:
            raise DataError(f"{csv_path} row {row}: path {rel!r} resolves outside the data root {base}") from None
    return resolved


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: required column(s) {', '.join(missing)} missing; found {', '.join(frame.columns) or 'none'}"
        )


def _index_images(root: Path, suffixes: Sequence[str]) -> dict[str, str]:
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
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # pruned and in a stable order
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in suffixes:
                continue
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                _check_inside(base, Path(path))
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


def _check_inside(base: Path, path: Path) -> None:
    """Refuse ``path`` when it (through a symlink) lies outside the resolved data root ``base``."""
    if path.is_symlink() and not path.resolve().is_relative_to(base):
        raise DataError(f"{path} is a symlink to {path.resolve()}, outside the data root {base}; "
                        "copy the file into the data folder instead")  # fmt: skip


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _apply_task(
    raw: pd.DataFrame,
    source: str,
    base: Path,
    positive: str | Sequence[str] | None,
    negative: str | Sequence[str] | None,
) -> tuple[pd.DataFrame, LoadReport]:
    classes = sorted(set(raw["class_name"]))
    pos = _as_list(positive)
    neg = _as_list(negative)
    if pos is None:
        pos = _default_positive(raw["class_name"], source)
    if neg is None:
        neg = ["nv"] if source == "ham10000" else ["rest"]
    if neg == ["rest"]:
        neg = [c for c in classes if c not in pos]
    known = set(HAM_DX) if source == "ham10000" else set(classes)
    for name in pos + neg:
        if name not in known:
            raise DataError(f"class {name!r} is not in the data; found {', '.join(classes)}")
    overlap = sorted(set(pos) & set(neg))
    if overlap:
        raise DataError(f"class(es) {', '.join(overlap)} are both positive and negative")
    keep = raw["class_name"].isin(pos + neg)
    table = raw[keep].reset_index(drop=True)
    table.insert(2, "label", table["class_name"].isin(pos).astype(np.int64))
    report = LoadReport(
        source=source,
        root=base,
        positive=pos,
        negative=neg,
        n_rows=len(raw),
        n_excluded=int((~keep).sum()),
    )
    _check_both_classes(table, pos, neg)
    _check_groups(table)
    if table["id"].duplicated().any():
        dup = table["id"][table["id"].duplicated()].iloc[0]
        raise DataError(f"sample id {dup!r} appears more than once")
    return table, report


def _default_positive(class_names: pd.Series, source: str) -> list[str]:
    if source == "ham10000":
        return ["mel"]
    counts = class_names.value_counts()
    if len(counts) == 1:
        raise DataError(f"only one class found ({counts.index[0]}); a binary task needs images of a positive "
                        "and a negative class")  # fmt: skip
    if set(counts.index) <= {"0", "1"}:
        return ["1"]
    if len(counts) == 2:
        return [str(counts.idxmin())]
    raise DataError(
        f"{len(counts)} classes found ({', '.join(sorted(counts.index))}); say which are positive with --positive"
    )


def _check_groups(table: pd.DataFrame) -> None:
    """Each image without a lesion id becomes its own group (with a warning); a lesion in both classes is an error."""
    empty = table["group"].isna() | (table["group"].astype(str).str.strip() == "")
    if empty.any():
        table.loc[empty, "group"] = table.loc[empty, "id"]
        warn(f"{int(empty.sum())} image(s) have no lesion id (first: {table['id'][empty].iloc[0]}); each is "
             "treated as its own lesion, so images of one lesion could land in different splits")  # fmt: skip
    classes_per_group = table.groupby("group")["label"].nunique()
    mixed = classes_per_group.index[classes_per_group > 1]
    if len(mixed):
        first = table[table["group"] == mixed[0]]
        shown = ", ".join(f"{i} ({c})" for i, c in zip(first["id"][:_SHOW], first["class_name"][:_SHOW], strict=True))
        raise DataError(f"lesion {mixed[0]!r} has images of both classes: {shown} ({len(mixed)} such lesion(s)); "
                        "one lesion has one diagnosis: fix the labels or give the images their own lesion ids")


def _check_both_classes(table: pd.DataFrame, pos: list[str], neg: list[str]) -> None:
    if not (table["label"] == 1).any():
        raise DataError(f"positive class ({', '.join(pos)}) has no samples")
    if not (table["label"] == 0).any():
        raise DataError(f"negative class ({', '.join(neg) or 'none'}) has no samples")
