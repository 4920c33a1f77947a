"""The unlabeled pool: images a dermatologist may be asked to label, as a table ``id, path, group``.

A pool is a folder (searched recursively; id = the file stem, group = the id) or
a CSV with a ``path`` column, relative to the CSV's folder and never outside
it, and optional ``id`` and ``group`` (or HAM10000's ``image_id`` and
``lesion_id``) columns: a lesion's images are asked together. Ids are the
labeled data's kind (``ISIC_…``), so an answer joins the labeled set under the
same id. The same image checks as labeled data apply, and an image already in
the labeled set is refused by name: it cannot be asked for, nor reach val or test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from hardmine.core.errors import DataError, warn
from hardmine.core.io import file_digest, unguard_formula
from hardmine.data.images import (
    IMAGE_SUFFIXES,
    csv_paths,
    find_unreadable,
    image_inputs,
    missing_files,
    read_csv,
    require_columns,
    why_unreadable,
)


def load_pool(
    source: str | os.PathLike, labeled: pd.DataFrame | None = None, answered: set[str] | None = None
) -> pd.DataFrame:
    """The pool at ``source`` (folder or CSV) as ``id, path, group``, in a stable order.

    Images whose id is in ``answered`` (labeled or ``unsure`` on the labeling page) leave the pool
    and are never asked again; how many is ``pool.attrs["answered"]``. ``labeled`` (a run's sample
    table, ``id`` and ``path`` columns) is checked against: any other pool image with a labeled id or
    path raises :class:`DataError` naming it.
    """
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".csv":
        frame = read_csv(path)
        require_columns(frame, ("path",), path)
        frame = frame.rename(columns={"image_id": "id", "lesion_id": "group"})
        paths = [str(p) for p in csv_paths(path, frame["path"])]
        ids = frame["id"] if "id" in frame else pd.Series([Path(p).stem for p in frame["path"]])
        groups = frame["group"] if "group" in frame else ids
        pool = pd.DataFrame({"id": ids.astype(str).to_numpy(), "path": paths,
                             "group": groups.astype(str).to_numpy()})  # fmt: skip
        missing = missing_files(pool["path"])
        if missing:
            raise DataError(f"{len(missing)} pool image(s) listed in {path} not found, first: {missing[0]}")
    elif path.is_dir():
        paths = image_inputs([path])
        root = path.resolve()
        outside = [p for p in paths if not Path(p).resolve().is_relative_to(root)]
        if outside:  # a link out of the pool: the image an answer copies would not be the pool's
            raise DataError(f"--pool {path}: {outside[0]} links to {Path(outside[0]).resolve()}, outside the pool "
                            f"folder ({len(outside)} such image(s)); copy the images into the folder instead"
                            )  # fmt: skip
        pool = pd.DataFrame({"id": [Path(p).stem for p in paths], "path": paths})
        pool["group"] = pool["id"]
    else:
        raise DataError(f"--pool {path}: expected a folder of images ({', '.join(IMAGE_SUFFIXES)}) or a CSV with a "
                        "path column")  # fmt: skip
    pool = _normalised(pool, path)
    asked = pool["id"].isin(answered or set())
    pool = pool[~asked]
    duplicated = pool["id"][pool["id"].duplicated()]
    if len(duplicated):
        raise DataError(f"--pool {path}: image id {duplicated.iloc[0]!r} appears more than once")
    bad = find_unreadable(pool["path"])
    if bad:
        raise DataError(f"--pool {path}: {len(bad)} unreadable image(s), first: {bad[0]} ({why_unreadable(bad[0])})")
    if labeled is not None:
        _check_not_labeled(pool, labeled, path)
    pool = pool.reset_index(drop=True)
    pool.attrs["answered"] = int(asked.sum())
    return pool


def _normalised(pool: pd.DataFrame, source: Path) -> pd.DataFrame:
    """Ids and lesions as every later command reads them, made once here: spaces around them dropped, a
    spreadsheet's formula guard (a leading ``'`` before ``= + - @``) undone; a blank id is refused naming its
    row, a blank lesion becomes the image's own (with a warning)."""
    ids = pool["id"].astype(str).str.strip().map(unguard_formula)
    groups = pool["group"].astype(str).str.strip().map(unguard_formula)
    blank = ids == ""
    if blank.any():
        raise DataError(f"--pool {source} row {int(blank.to_numpy().argmax()) + 2}: the image id is blank; give every "
                        "pool image an id (or leave the id column out: ids are then the file names)")  # fmt: skip
    lone = groups == ""
    if lone.any():
        warn(f"--pool {source}: {int(lone.sum())} image(s) without a lesion (first: {ids[lone].iloc[0]}) are each "
             "their own lesion")  # fmt: skip
        groups = groups.where(~lone, ids)
    return pool.assign(id=ids, group=groups)


def copies_of_labeled(pool: pd.DataFrame, labeled: pd.DataFrame) -> pd.Series:
    """(N,) for each pool image, the id of a labeled image whose file holds the same bytes (a renamed or
    moved copy), else None.

    Only files of a size some labeled file has are read and hashed (SHA-256), so a pool with no copies
    costs a ``stat`` per file.
    """
    def size(path: str) -> int:
        return os.stat(path).st_size

    labeled_sizes = pd.Series([size(p) for p in labeled["path"]], index=labeled.index)
    pool_sizes = pd.Series([size(p) for p in pool["path"]], index=pool.index)
    candidates = pool_sizes.isin(set(labeled_sizes))
    found = pd.Series([None] * len(pool), index=pool.index, dtype=object)
    if not candidates.any():
        return found
    same_size = labeled[labeled_sizes.isin(set(pool_sizes[candidates]))]
    by_digest = {file_digest(path): image_id for image_id, path in zip(same_size["id"], same_size["path"], strict=True)}
    for row in pool.index[candidates]:
        found[row] = by_digest.get(file_digest(pool.at[row, "path"]))
    return found


def _check_not_labeled(pool: pd.DataFrame, labeled: pd.DataFrame, source: Path) -> None:
    known_ids = set(labeled["id"].astype(str))
    known_paths = {os.path.realpath(p) for p in labeled["path"]}
    for image_id, image_path in zip(pool["id"], pool["path"], strict=True):
        if image_id in known_ids or os.path.realpath(image_path) in known_paths:
            raise DataError(f"--pool {source}: {image_id} ({image_path}) is already in the labeled data; a pool "
                            "holds only images without a label")  # fmt: skip
