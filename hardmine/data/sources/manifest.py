"""A manifest CSV: ``path,label[,group][,id]``, paths relative to the CSV's folder and never outside it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from hardmine.core.errors import DataError
from hardmine.data.images import csv_paths, missing_files, read_csv, require_columns
from hardmine.data.sources.base import DataSource, add_metadata

MANIFEST_NAMES = ("manifest.csv", "labels.csv")
_SHOW = 5


class Manifest(DataSource):
    """id = the ``id`` column (``hardmine relabel`` writes the run's ids there, so they stay the same), else
    the path without its suffix; group = the ``group`` column, else the image itself."""

    name = "manifest"

    def detect(self, root: Path, metadata: str | os.PathLike | None) -> bool:
        if root.is_file():
            return root.suffix.lower() == ".csv"
        return any((root / name).exists() for name in MANIFEST_NAMES)

    def read(self, root: Path, metadata: str | os.PathLike | None) -> tuple[pd.DataFrame, Path]:
        return _read_manifest(root)


def _read_manifest(root: Path) -> tuple[pd.DataFrame, Path]:
    if root.is_dir():
        candidates = [root / n for n in MANIFEST_NAMES if (root / n).exists()]
        if not candidates:
            raise DataError(f"no manifest ({' or '.join(MANIFEST_NAMES)}) in {root}")
        csv_path = candidates[0]
    else:
        csv_path = root
    frame = read_csv(csv_path)
    require_columns(frame, ("path", "label"), csv_path)
    base = csv_path.parent.resolve()
    paths = csv_paths(csv_path, frame["path"].astype(str))
    absent = set(missing_files(paths))
    if absent:
        missing = [str(listed) for listed, path in zip(frame["path"], paths, strict=True) if str(path) in absent]
        raise DataError(f"{len(missing)} image(s) listed in {csv_path} not found, first: {', '.join(missing[:_SHOW])}")
    seen: dict[Path, int] = {}
    for row, path in enumerate(paths, start=2):  # row 1 is the header
        if path in seen:  # csv_paths resolved them: img/a.png and img/../img/a.png are one file
            raise DataError(f"{csv_path} row {row}: {frame['path'].iloc[row - 2]!r} is the image of row {seen[path]} "
                            "again; list each image once")  # fmt: skip
        seen[path] = row
    rel_ids = frame["path"].astype(str).map(lambda s: Path(s).with_suffix("").as_posix())
    if "id" in frame:
        blank = np.flatnonzero(frame["id"].str.strip() == "")
        if len(blank):
            raise DataError(f"{csv_path} row {blank[0] + 2}: the id is empty; give every image an id, or drop the "
                            "id column to use the paths")  # fmt: skip
        twice = frame["id"][frame["id"].duplicated()]
        if len(twice):
            raise DataError(f"{csv_path}: id {twice.iloc[0]!r} names more than one image; ids must be unique")
        rel_ids = frame["id"]
    groups = frame["group"].astype(str) if "group" in frame else rel_ids
    table = pd.DataFrame(
        {
            "id": rel_ids,
            "path": [str(p) for p in paths],
            "class_name": frame["label"].astype(str),
            "group": groups,
        }
    )
    return add_metadata(table, frame, ("path", "label", "group", "id"), csv_path), base
