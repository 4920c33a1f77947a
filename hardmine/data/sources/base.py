"""The data-source protocol: how a source is recognised and read into the raw sample table."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from hardmine.core.errors import DataError


class DataSource:
    """A way labelled images are laid out on disk.

    :meth:`read` returns the raw table, one row per image: ``id`` (stable across
    sources), ``path``, ``class_name``, ``group`` (lesion; empty when unknown) and
    any metadata columns, plus the root every path must stay inside.
    :func:`hardmine.data.sources.load_samples` then maps classes to labels and
    checks groups and images the same way for every source.

    Attributes
    ----------
    name : the ``--source`` name.
    default_positive, default_negative : class names when the user names none
        (None: the rarer of two classes is positive, every other class negative).
    known_classes : the classes this source can hold, when fixed (``--positive``
        may name one absent from the data); None: the classes found.
    fallback : a layout so generic (any folder of folders) that ``--source auto``
        asks it only after every specific source.
    trusted_default : the ``--trusted`` rule a run of this source gets when the user names none
        (``COLUMN=VALUE[,VALUE]``; "" trusts no label).
    """

    name: str = ""
    default_positive: list[str] | None = None
    default_negative: list[str] | None = None
    known_classes: tuple[str, ...] | None = None
    fallback: bool = False
    trusted_default: str = ""

    def detect(self, root: Path, metadata: str | os.PathLike | None) -> bool:
        """Whether ``root`` (and ``--metadata``) look like this source (``--source auto`` asks in registry order)."""
        raise NotImplementedError

    def read(self, root: Path, metadata: str | os.PathLike | None) -> tuple[pd.DataFrame, Path]:
        """The raw table and the data root its paths stay inside."""
        raise NotImplementedError


# the sample table's own columns (and the split a run adds): a metadata column of these names would
# silently replace what the source read (images from outside the root, lesions that cross splits)
INTERNAL_COLUMNS = ("id", "path", "label", "group", "class_name", "split")


def add_metadata(table: pd.DataFrame, frame: pd.DataFrame, read: tuple[str, ...], source: Path) -> pd.DataFrame:
    """``table`` with every column of ``frame`` not in ``read`` (the columns the source itself read) added as
    metadata; a column named like one of the sample table's own raises :class:`DataError` naming it."""
    extra = [c for c in frame.columns if c not in read]
    shadowing = [c for c in extra if str(c).strip().lower() in INTERNAL_COLUMNS]
    if shadowing:
        raise DataError(f"{source}: column {shadowing[0]!r} is a name hardmine uses for its own "
                        f"({', '.join(INTERNAL_COLUMNS)}); rename it")  # fmt: skip
    for col in extra:
        table[col] = frame[col].values
    return table

