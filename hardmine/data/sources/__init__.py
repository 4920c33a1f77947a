"""Data sources as plug-ins, and the one sample table they all become.

Each source is a :class:`~hardmine.data.sources.base.DataSource` in a file of
its own, named in :data:`DATA_SOURCES` (``--source``; ``auto`` asks each in
turn). :func:`load_samples` reads one into the sample table: the columns
``id, path, label, group, class_name`` plus any extra metadata columns, where
``label`` is 1 for the positive (costly, usually minority) class and 0 for the
negative class; rows of classes in neither set are left out. Class mapping,
lesion checks and image checks are the same for every source.

Adding a source: write ``hardmine/data/sources/<name>.py`` with a
``DataSource`` subclass and add one line to :data:`DATA_SOURCES`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hardmine.core.errors import DataError, warn
from hardmine.data.answers import answered_samples, answers_folder
from hardmine.data.images import find_unreadable, why_unreadable
from hardmine.data.sources.base import DataSource
from hardmine.data.sources.folders import Folders
from hardmine.data.sources.ham10000 import HAM_METADATA, Ham10000
from hardmine.data.sources.manifest import MANIFEST_NAMES, Manifest

DATA_SOURCES: dict[str, type[DataSource]] = {
    "ham10000": Ham10000,
    "manifest": Manifest,
    "folders": Folders,
}
_SHOW = 5  # how many offending ids an error message lists


def source_names() -> tuple[str, ...]:
    """What ``--source`` accepts: ``auto`` and every registered source."""
    return ("auto", *DATA_SOURCES)


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


def load_samples(
    root: str | os.PathLike,
    source: str = "auto",
    *,
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
        ``auto`` or a name in :data:`DATA_SOURCES`.
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

    Images answered on the labeling page (``hardmine label``, kept in ``root/hardmine-answers/``)
    join the source's own rows with their answers as labels.

    Returns
    -------
    table, report
        ``table`` has one row per image: ``id, path, label (0/1), group,
        class_name`` and extra metadata columns, index ``0..N-1``.
    """
    if source not in source_names():
        raise DataError(f"unknown source {source!r}; expected one of {', '.join(source_names())}")
    root_path = Path(root)
    if not root_path.exists():
        raise DataError(f"data path {root_path} does not exist")
    if source == "auto":
        source = detect_source(root_path, metadata)
    reader = DATA_SOURCES[source]()
    raw, base = reader.read(root_path, metadata)
    answered = answered_samples(root_path)  # labels given on the labeling page (hardmine label)
    if len(answered):
        clash = answered["id"][answered["id"].isin(set(raw["id"]))]
        if len(clash):
            raise DataError(f"{clash.iloc[0]} is both in {root_path} and among the answers in "
                            f"{answers_folder(root_path)}; remove one of them")  # fmt: skip
        raw = pd.concat([raw, answered], ignore_index=True)
    table, report = _apply_task(raw, reader, base, positive, negative)
    if verify_images:
        bad = find_unreadable(table["path"], cache_for=root_path)
        if bad:
            if not skip_bad:
                raise DataError(f"{len(bad)} unreadable image(s), first: {bad[0]} ({why_unreadable(bad[0])}); "
                                "--skip-bad drops them")  # fmt: skip
            table = table[~table["path"].isin(set(bad))].reset_index(drop=True)
            report.bad_files = bad
            _check_both_classes(table, report.positive, report.negative)
    return table, report


def detect_source(root: Path, metadata: str | os.PathLike | None = None) -> str:
    """Guess the source of ``root``: the first registered source that recognises it, fallbacks last."""
    for name, kind in sorted(DATA_SOURCES.items(), key=lambda item: item[1].fallback):
        if kind().detect(root, metadata):
            return name
    raise DataError(
        f"cannot tell the data source of {root}: expected {HAM_METADATA}, a manifest CSV "
        f"({' or '.join(MANIFEST_NAMES)}) or class sub-folders"
    )


def source_trust(root: str | os.PathLike | None, source: str = "auto",
                 metadata: str | os.PathLike | None = None) -> str:
    """The ``--trusted`` rule a run of this data gets when the user names none: its source's
    :attr:`~hardmine.data.sources.base.DataSource.trusted_default` ("" when the data is absent or of no
    known source: loading it says why)."""
    if root is None or not Path(root).exists() or source not in source_names():
        return ""
    try:
        name = detect_source(Path(root), metadata) if source == "auto" else source
    except DataError:
        return ""
    return DATA_SOURCES[name].trusted_default


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _apply_task(
    raw: pd.DataFrame,
    source: DataSource,
    base: Path,
    positive: str | Sequence[str] | None,
    negative: str | Sequence[str] | None,
) -> tuple[pd.DataFrame, LoadReport]:
    classes = sorted(set(raw["class_name"]))
    pos = _as_list(positive)
    neg = _as_list(negative)
    if pos is None:
        pos = source.default_positive or _rarer_class(raw["class_name"])
    if neg is None:
        neg = source.default_negative or ["rest"]
    if neg == ["rest"]:
        neg = [c for c in classes if c not in pos]
    known = set(source.known_classes or classes)
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
        source=source.name,
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


def _rarer_class(class_names: pd.Series) -> list[str]:
    """The positive class when none is named: ``1`` of 0/1 labels, else the rarer of two classes."""
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
