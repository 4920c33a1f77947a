"""The run's split of a sample table (made once, saved as ``split.csv``, re-used as is) and its summaries."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from hardmine.core.errors import DataError, warn
from hardmine.core.io import write_csv
from hardmine.core.splits import SPLITS, grouped_split
from hardmine.data.images import read_csv, require_columns


def make_or_load_split(
    table: pd.DataFrame,
    path: str | os.PathLike,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    split_from: str | os.PathLike | None = None,
    planned: pd.Series | None = None,
) -> pd.Series:
    """Return the split of each row, re-using ``path`` (``split.csv``) when it exists.

    A new split is grouped by lesion; with ``split_from`` (an earlier run's ``split.csv``) it is
    that split instead: an image keeps its split, an image new to it takes its lesion's, and a
    lesion new to it goes to train (so reviewed or relabelled images never move into test, and
    two runs are measured on the same test lesions). ``planned``: that new split, made (and checked)
    already by :func:`make_split`, to save instead of making it again.

    Returns a Series aligned with ``table`` holding ``train|val|test``.
    """
    path = Path(path)
    if path.exists():
        saved = read_csv(path)
        require_columns(saved, ("id", "group", "split"), path)
        twice = saved["id"][saved["id"].duplicated()]
        if len(twice):
            raise DataError(f"{path}: sample {twice.iloc[0]!r} is listed more than once; one split per image")
        lookup = dict(zip(saved["id"], saved["split"], strict=True))
        split = table["id"].map(lookup)
        if split.isna().any():
            first = table["id"][split.isna()].iloc[0]
            raise DataError(
                f"{path}: {int(split.isna().sum())} sample(s) have no split, first {first!r}; "
                "the data changed since the split was made (use a new --out)"
            )
        bad = sorted(set(split) - set(SPLITS))
        if bad:
            raise DataError(f"{path}: unknown split value(s) {', '.join(bad)}; expected {', '.join(SPLITS)}")
        spread = pd.DataFrame({"group": table["group"], "split": split}).groupby("group")["split"].nunique()
        if (spread > 1).any():
            raise DataError(f"{path}: lesion {spread.index[spread > 1][0]!r} is in more than one split; a lesion's "
                            "images share one split (restore the file, or start again in another --out)")  # fmt: skip
        return split.rename("split")
    split = planned if planned is not None else make_split(table, fractions, seed, split_from)
    write_csv(path, pd.DataFrame({"id": table["id"], "group": table["group"], "split": split}))
    return split


def make_split(
    table: pd.DataFrame,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    split_from: str | os.PathLike | None = None,
) -> pd.Series:
    """A new split of ``table`` (see :func:`make_or_load_split`), written nowhere; a split that leaves a
    part empty, or train or val without one of the classes, is a :class:`DataError` saying so."""
    if split_from is not None:
        split = _earlier_split(table, Path(split_from))
    else:
        split = pd.Series(
            grouped_split(table["label"].to_numpy(), table["group"].to_numpy(), fractions, seed),
            index=table.index,
            name="split",
        )
    for part in ("train", "val", "test"):
        labels = table["label"][(split == part).to_numpy()]
        if len(labels) == 0 or (part != "test" and labels.nunique() < 2):
            held = f"{int(labels.sum())} positive and {int((labels == 0).sum())} negative images"
            raise DataError(f"the split of {len(table)} images ({table['group'].nunique()} lesions) leaves {part} "
                            f"with {held}; train and val need both classes and test some images: use more data "
                            "(tens of lesions of each class at the least)")  # fmt: skip
    return split


def _earlier_split(table: pd.DataFrame, earlier: Path) -> pd.Series:
    saved = read_csv(earlier)
    require_columns(saved, ("id", "group", "split"), earlier)
    by_id = dict(zip(saved["id"], saved["split"], strict=True))
    by_group = dict(zip(saved["group"], saved["split"], strict=False))
    split = table["id"].map(by_id).fillna(table["group"].map(by_group))
    known = split.notna()
    if not known.any():
        raise DataError(f"--split-from: no image of this data is in {earlier} (its ids differ: was the earlier run "
                        "made on other data?)")  # fmt: skip
    if not known.all():
        warn(f"--split-from {earlier.parent}: {int((~known).sum())} image(s) of lesions it did not hold go to train")
    split = split.fillna("train").rename("split")
    spread = split.groupby(table["group"].to_numpy()).nunique()
    if (spread > 1).any():  # the same ids, other lesions: another data set, whose split would leak lesions
        lesion = spread.index[(spread > 1).to_numpy()][0]
        parts = sorted(set(split[(table["group"] == lesion).to_numpy()]))
        raise DataError(f"--split-from {earlier.parent}: lesion {lesion!r} would sit in {' and '.join(parts)} "
                        f"({int((spread > 1).sum())} lesion(s) so): the earlier run grouped these images "
                        "otherwise; was it made on other data?")  # fmt: skip
    return split


def class_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per class: its label, images, groups and images per group (mean, max)."""
    rows = []
    for name, part in table.groupby("class_name"):
        per_group = part.groupby("group").size()
        rows.append({"class": str(name), "label": int(part["label"].iloc[0]), "images": len(part),
                     "groups": len(per_group), "images/group mean": float(per_group.mean()),
                     "images/group max": int(per_group.max())})  # fmt: skip
    return pd.DataFrame(rows)


def split_summary(table: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    """Counts and positive rate per split (rows train/val/test/all)."""
    rows = []
    for name in (*SPLITS, "all"):
        part = table if name == "all" else table[split == name]
        n_pos = int(part["label"].sum())
        rows.append(
            {
                "split": name,
                "images": len(part),
                "groups": part["group"].nunique(),
                "positive": n_pos,
                "negative": len(part) - n_pos,
                "positive_rate": n_pos / len(part) if len(part) else float("nan"),
            }
        )
    return pd.DataFrame(rows)
