"""The run's split of a sample table (made once, saved as ``split.csv``, re-used as is) and its summaries."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from hardmine.core.errors import DataError
from hardmine.core.io import write_csv
from hardmine.core.splits import SPLITS, grouped_split
from hardmine.data.images import read_csv, require_columns


def make_or_load_split(
    table: pd.DataFrame,
    path: str | os.PathLike,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> pd.Series:
    """Return the split of each row, re-using ``path`` (``split.csv``) when it exists.

    Returns a Series aligned with ``table`` holding ``train|val|test``.
    """
    path = Path(path)
    if path.exists():
        saved = read_csv(path)
        require_columns(saved, ("id", "group", "split"), path)
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
            raise DataError(f"{path}: unknown split value(s) {', '.join(bad)}")
        return split.rename("split")
    split = pd.Series(
        grouped_split(table["label"].to_numpy(), table["group"].to_numpy(), fractions, seed),
        index=table.index,
        name="split",
    )
    write_csv(path, pd.DataFrame({"id": table["id"], "group": table["group"], "split": split}))
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
