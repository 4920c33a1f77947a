"""Data: the demo set and a check of the user's data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from hardmine.cli.app import command
from hardmine.cli.options import (
    DATA,
    with_options,
)
from hardmine.cli.printing import (
    console,
    frame_table,
)
from hardmine.core.errors import HardmineError
from hardmine.record.config import RunConfig


@command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Folder to write the demo data set into.")],
    n: Annotated[int, typer.Option("--images", help="Number of images.")] = 2300,
    positive_frac: Annotated[float, typer.Option(help="Share of melanoma images.")] = 0.10,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 0,
    pool: Annotated[int, typer.Option(help="Also about this many unlabeled images in OUT-pool/ (pool.csv; its "
                                      "dx column is for a simulated oracle only).")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the demo set already in OUT (and "
                                            "OUT-pool), answers kept beside it included.")] = False,
    rounds_alias: Annotated[int | None, typer.Option("--n", hidden=True)] = None,
) -> None:
    """Write a HAM10000-layout demo set with planted hard cases and label flips."""
    from hardmine.data.synth import check_demo_options, generate_demo, pool_folder, remove_demo

    if rounds_alias is not None:  # --n counts rounds everywhere else: never read it as a number of images
        raise HardmineError(f"demo-data counts images with --images (got --n {rounds_alias}; --n counts rounds in "
                            "`hardmine round`)")  # fmt: skip
    check_demo_options(n=n, positive_frac=positive_frac, size=size, seed=seed, pool=pool)  # before anything is removed
    if out.exists() and any(out.iterdir()) or pool_folder(out).exists():
        if not overwrite:
            raise HardmineError(f"{out} already holds files; demo-data writes a new data set: choose another folder, "
                                "or --overwrite to replace a demo set made there")  # fmt: skip
        remove_demo(out)

    meta = generate_demo(out, n=n, positive_frac=positive_frac, size=size, seed=seed, pool=pool)
    n_mel = int((meta["dx"] == "mel").sum())
    console.print(
        f"wrote {len(meta)} images ({n_mel} mel, {len(meta) - n_mel} nv, "
        f"{meta['lesion_id'].nunique()} lesions) to {out}; planted cases in {out / 'planted.csv'}"
    )
    if pool:
        pool_csv = pool_folder(out) / "pool.csv"
        console.print(f"unlabeled pool: {len(pd.read_csv(pool_csv))} images listed in {pool_csv}")

@command("check-data")
@with_options(DATA, skip=("data",))
def check_data(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Data folder or manifest CSV.")], config: RunConfig = None
) -> None:
    """Load a data set the way training will and summarise it."""
    from hardmine.core.splits import grouped_split
    from hardmine.data.sources import load_samples
    from hardmine.data.splits import class_summary, split_summary

    d = config.data
    table, report = load_samples(data, d.source, positive=d.positive, negative=d.negative, metadata=d.metadata,
                                 verify_images=True, skip_bad=d.skip_bad)  # fmt: skip
    console.print(f"source: [bold]{report.source}[/] at {report.root}")
    console.print(
        f"positive = {', '.join(report.positive)}; negative = {', '.join(report.negative)}; "
        f"{report.n_rows} rows read, {report.n_excluded} of other classes left out"
    )
    if report.bad_files:
        console.print(f"[yellow]skipped {len(report.bad_files)} unreadable image(s)[/], first: {report.bad_files[0]}")
    else:
        console.print("missing or unreadable files: none")
    console.print(frame_table(class_summary(table), "classes", digits=2))
    split = pd.Series(grouped_split(table["label"].to_numpy(), table["group"].to_numpy(), d.split, d.split_seed))
    shares = "/".join(f"{share * 100:g}" for share in d.split)
    console.print(frame_table(split_summary(table, split), f"grouped split it would make ({shares})"))
