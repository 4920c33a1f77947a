"""One method under two settings, paired per seed: what changing one option does to test metrics.

``hardmine compare`` pairs every method against the best baseline of the same folder. To
measure one option (for example ``--triage networks`` against the default ``head``) run
the same compare twice into two folders, same data, seeds and recipe, then pair the method's
runs of folder A with those of folder B: per seed, the model each run handed back (its best
round on validation, or its equal-epochs reference), on the same test images (and the same external
set), with the two-level bootstrap of :mod:`hardmine.core.paired`, A minus B.

Usage::

    python benchmarks/bench_paired_settings.py A_DIR B_DIR --method hardmine-head \\
        [--external EXT_DATA] [--subgroup pigment] [--csv out.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from hardmine.data.sources import load_samples
from hardmine.record.record import RunFolder
from hardmine.run.compare import paired_table


def handed_back(folder: Path, split: str) -> tuple[pd.DataFrame, float]:
    """``id, label, prob_pos`` of the model a run handed back on ``split`` (``test`` or ``external``),
    and its validation-tuned threshold."""
    model, r = RunFolder(folder).returned()
    path = model.external_preds_path(r) if split == "external" else model.preds_path(r, split)
    return pd.read_csv(path, dtype={"id": str}), model.threshold(r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="compare folder of setting A")
    parser.add_argument("b", type=Path, help="compare folder of setting B (the reference)")
    parser.add_argument("--method", required=True, help="e.g. hardmine-head")
    parser.add_argument("--external", type=Path, help="the external data set both compares scored")
    parser.add_argument("--subgroup", help="also the sensitivity per value of this metadata column")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args()
    seeds = sorted(p.name for p in (args.a / args.method).glob("seed-*") if (args.b / args.method / p.name).exists())
    if not seeds:
        raise SystemExit(f"no seed of {args.method} in both {args.a} and {args.b}")
    samples = {"test": RunFolder(args.a / args.method / seeds[0]).samples()}
    if args.external:
        samples["external"] = load_samples(args.external.resolve())[0]
    outputs, datasets = {}, {}
    for name, table in samples.items():
        runs = {side: [handed_back(root / args.method / s, name) for s in seeds] for side, root in
                (("A", args.a), ("B", args.b))}  # fmt: skip
        ids = runs["A"][0][0]["id"]
        for preds, _ in runs["A"] + runs["B"]:
            if list(preds["id"]) != list(ids):
                raise SystemExit(f"the runs scored different {name} images: not the same split or data")
        table = table.set_index(table["id"].astype(str)).loc[ids]
        table["label"] = runs["A"][0][0]["label"].to_numpy()
        for side, side_runs in runs.items():
            for seed, (preds, threshold) in zip(seeds, side_runs, strict=True):
                outputs.setdefault((side, seed), {"threshold": threshold})[name] = preds["prob_pos"].to_numpy()
        datasets[name] = table.reset_index(drop=True)
    table = paired_table("B", ["A", "B"], seeds, outputs, datasets, args.subgroup, args.n_boot)
    table = table.drop(columns=["method", "baseline"])
    print(f"{args.method}: {args.a} minus {args.b}, seeds {', '.join(seeds)}")
    print(table.round(3).to_string(index=False))
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
