"""HAM10000 as published: ``HAM10000_metadata.csv`` and ``<image_id>.jpg`` anywhere below the folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from hardmine.core.errors import DataError
from hardmine.data.images import index_images, read_csv, require_columns
from hardmine.data.sources.base import DataSource, add_metadata

HAM_METADATA = "HAM10000_metadata.csv"
HAM_DX = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
HAM_FOLDER = re.compile(r"HAM10000_images", re.IGNORECASE)  # the release's image folders, never classes
_SHOW = 5  # how many offending ids an error message lists


class Ham10000(DataSource):
    """Group = ``lesion_id``, class = ``dx``, id = ``image_id``; melanoma against nevus unless told otherwise."""

    name = "ham10000"
    default_positive = ["mel"]
    default_negative = ["nv"]
    known_classes = HAM_DX
    # a diagnosis confirmed by histopathology is the ground truth the others are checked against: its
    # label is not doubted (quarantined) by default; --trusted none doubts every label
    trusted_default = "dx_type=histo"

    def detect(self, root: Path, metadata: str | os.PathLike | None) -> bool:
        return metadata is not None or (root.is_dir() and (root / HAM_METADATA).exists())

    def read(self, root: Path, metadata: str | os.PathLike | None) -> tuple[pd.DataFrame, Path]:
        return _read_ham10000(root, metadata)


def _read_ham10000(root: Path, metadata: str | os.PathLike | None) -> tuple[pd.DataFrame, Path]:
    meta_path = Path(metadata) if metadata is not None else root / HAM_METADATA
    if not meta_path.is_file():
        raise DataError(f"metadata file {meta_path} not found (expected {HAM_METADATA})")
    frame = read_csv(meta_path)
    require_columns(frame, ("lesion_id", "image_id", "dx"), meta_path)
    frame = frame.astype({"image_id": str, "lesion_id": str, "dx": str})
    unknown = sorted(set(frame["dx"]) - set(HAM_DX))
    if unknown:
        raise DataError(f"{meta_path}: unknown dx value(s) {', '.join(unknown)}; expected {', '.join(HAM_DX)}")
    bad_ids = frame["image_id"][frame["image_id"].str.contains(r"[/\\]|^\.\.?$|\x00", regex=True)]
    if len(bad_ids):
        raise DataError(f"{meta_path}: image_id {bad_ids.iloc[0]!r} would resolve outside the data root")
    image_root = root if root.is_dir() else meta_path.parent
    found = index_images(image_root, suffixes=(".jpg", ".jpeg"))
    paths = frame["image_id"].map(found)
    missing = frame["image_id"][paths.isna()].tolist()
    if missing:
        raise DataError(
            f"{len(missing)} image(s) listed in {meta_path.name} not found under {image_root}, "
            f"first: {', '.join(missing[:_SHOW])}"
        )
    table = pd.DataFrame(
        {
            "id": frame["image_id"],
            "path": paths.astype(str),
            "class_name": frame["dx"],
            "group": frame["lesion_id"],
        }
    )
    return add_metadata(table, frame, ("image_id", "lesion_id", "dx"), meta_path), image_root
