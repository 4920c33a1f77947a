"""Answers from the labeling page, kept beside the data: ``DATA/hardmine-answers/``.

``hardmine label`` copies each answered pool image into
``hardmine-answers/images/`` and lists it in ``hardmine-answers/manifest.csv``
(``image_id, path, answer, group, run, answered_at``; ``path`` relative to the
folder). Nothing of the user's is touched: the source's own files stay as they
are, and :func:`hardmine.data.sources.load_samples` adds the answered images
to whatever source the folder holds, so every later run on this data sees them
with their labels. An ``unsure`` answer stays in the pool, is never asked
again, and never becomes a label.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from hardmine.core.errors import DataError
from hardmine.core.io import copy_file, file_digest, held, write_csv
from hardmine.data.images import csv_paths, data_root, missing_files, read_csv, require_columns, resolve_inside

ANSWERS_DIR = "hardmine-answers"
ANSWERS_MANIFEST = "manifest.csv"
ANSWERED_IMAGES = "images"
ANSWERS_LOCK = ".lock"  # held while a command merges its answers into the store
UNSURE = "unsure"
ID_COLUMNS = ("image_id", "id")  # how an answers or decisions file may name its image column (label, relabel)
COLUMNS = ("image_id", "path", "answer", "group", "run", "answered_at")


def answers_folder(data: str | os.PathLike) -> Path:
    """Where the answers of data ``data`` (a folder, or a manifest CSV in its folder) are kept."""
    return data_root(data) / ANSWERS_DIR


def _stored(manifest: Path) -> pd.DataFrame:
    if not manifest.is_file():
        return pd.DataFrame({name: pd.Series(dtype=str) for name in COLUMNS})
    frame = read_csv(manifest)
    require_columns(frame, COLUMNS, manifest)
    return frame[list(COLUMNS)].copy()


def read_answers(data: str | os.PathLike) -> pd.DataFrame:
    """Every answer recorded for ``data`` (``COLUMNS``; ``path`` absolute, empty for ``unsure``), in order."""
    manifest = answers_folder(data) / ANSWERS_MANIFEST
    frame = _stored(manifest)
    labeled = frame["answer"] != UNSURE
    frame.loc[labeled, "path"] = [str(p) for p in csv_paths(manifest, frame.loc[labeled, "path"])]
    return frame.reset_index(drop=True)


def answered_samples(data: str | os.PathLike) -> pd.DataFrame:
    """The labeled answers as source rows: ``id, path, class_name, group`` (``unsure`` left out)."""
    frame = read_answers(data)
    frame = frame[frame["answer"] != UNSURE]
    missing = missing_files(frame["path"])
    if missing:
        raise DataError(f"{answers_folder(data) / ANSWERS_MANIFEST} lists {len(missing)} answered image(s) that are "
                        f"gone, first: {missing[0]}")  # fmt: skip
    return pd.DataFrame({"id": frame["image_id"].to_numpy(), "path": frame["path"].to_numpy(),
                         "class_name": frame["answer"].to_numpy(), "group": frame["group"].to_numpy()})  # fmt: skip


def record_answers(data: str | os.PathLike, answers: pd.DataFrame, run: str) -> pd.DataFrame:
    """Add ``answers`` (``image_id, source_path, answer, group``) to the answers kept beside ``data``.

    Each labeled image is copied in first (an image already there under its name must be the
    same bytes), then the manifest is rewritten whole and atomically, so an interruption leaves
    the previous manifest intact. An answer already recorded with the same value is not repeated;
    one recorded with another value raises :class:`DataError`. Returns the rows added.
    """
    if not Path(data).exists():  # else a moved folder would read as a manifest CSV in its parent
        raise DataError(f"the data {data} is not there (moved or deleted?); the answers are kept beside the data "
                        "the run was made on")  # fmt: skip
    folder = answers_folder(data)
    root = data_root(data)
    if folder.is_symlink() or (folder.exists() and not folder.resolve().is_relative_to(root.resolve())):
        raise DataError(f"{folder} is a link out of the data folder {root}; the answers are kept inside it: make "
                        "it a plain folder")  # fmt: skip
    with held(folder / ANSWERS_LOCK):  # two `label`s on runs of one data set: each merges into the other's store
        return _record_answers(folder, answers, run)


def _record_answers(folder: Path, answers: pd.DataFrame, run: str) -> pd.DataFrame:
    known = _stored(folder / ANSWERS_MANIFEST)
    before = dict(zip(known["image_id"], known["answer"], strict=True))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = []
    for answer in answers.itertuples(index=False):
        recorded = before.get(answer.image_id)
        if recorded == answer.answer:
            continue
        if recorded is not None:
            raise DataError(f"{answer.image_id} was answered {recorded!r} before ({folder / ANSWERS_MANIFEST}); "
                            f"this answer says {answer.answer!r}: fix one of them there or in the answers")  # fmt: skip
        relative = ""
        if answer.answer != UNSURE:
            relative = f"{ANSWERED_IMAGES}/{answer.image_id}{Path(answer.source_path).suffix.lower()}"
            try:
                target = resolve_inside(folder, relative)  # an id is data: it never names a place outside
            except DataError:
                raise DataError(f"image id {answer.image_id!r} would be kept outside {folder}; give the pool image "
                                "an id without '..' or a leading '/'") from None  # fmt: skip
            if target.exists() and file_digest(target) != file_digest(answer.source_path):
                raise DataError(f"{target} exists and differs from {answer.source_path}; remove it or rename the "
                                "pool image")  # fmt: skip
            if not target.exists():
                copy_file(answer.source_path, target)
        rows.append({"image_id": answer.image_id, "path": relative, "answer": answer.answer,
                     "group": answer.group, "run": run, "answered_at": now})  # fmt: skip
    added = pd.DataFrame(rows, columns=list(COLUMNS))
    if len(added):
        write_csv(folder / ANSWERS_MANIFEST, pd.concat([known, added], ignore_index=True))
    return added
