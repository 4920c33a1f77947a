"""Class folders: ``root/<class>/*.jpg|png``, one lesion per image."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from hardmine.core.errors import DataError
from hardmine.data.answers import ANSWERS_DIR
from hardmine.data.images import check_inside, image_files_below
from hardmine.data.sources.base import DataSource
from hardmine.data.sources.ham10000 import HAM_FOLDER, HAM_METADATA


class Folders(DataSource):
    """id = ``<class>/<path below the class folder, without suffix>``; each image its own lesion (group = id)."""

    name = "folders"
    fallback = True

    def detect(self, root: Path, metadata: str | os.PathLike | None) -> bool:
        return root.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())

    def read(self, root: Path, metadata: str | os.PathLike | None) -> tuple[pd.DataFrame, Path]:
        return _read_folders(root)


def _read_folders(root: Path) -> tuple[pd.DataFrame, Path]:
    if not root.is_dir():
        raise DataError(f"{root} is a file; the folders source expects a folder with one sub-folder per class")
    class_dirs = sorted(p for p in root.iterdir()
                        if p.is_dir() and not p.name.startswith(".") and p.name != ANSWERS_DIR)  # fmt: skip
    release = [p.name for p in class_dirs if HAM_FOLDER.match(p.name)]
    if release:
        raise DataError(f"{HAM_METADATA} not found in {root}: {', '.join(release)} are HAM10000 image folders, "
                        f"not classes; put {HAM_METADATA} there or pass --metadata")  # fmt: skip
    base = root.resolve()
    rows = []
    for class_dir in class_dirs:
        check_inside(base, class_dir)
        for path in image_files_below(class_dir):  # images in sub-folders of a class belong to it too
            check_inside(base, path)
            image_id = f"{class_dir.name}/{path.relative_to(class_dir).with_suffix('').as_posix()}"
            rows.append((image_id, str(path), class_dir.name, image_id))  # each image its own lesion
    if not rows:
        raise DataError(f"no images (*.jpg, *.png) in the class folders of {root}")
    table = pd.DataFrame(rows, columns=["id", "path", "class_name", "group"])
    return table, base
