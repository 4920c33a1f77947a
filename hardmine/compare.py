"""Honest comparison: the usual imbalance baselines against hardmine rounds.

Every method gets the same data, the same grouped split, the same threshold
rule (tuned on validation, applied to test), the same seeds, and the same
total number of training epochs: the baselines train for as many epochs as
round 0 plus all mining rounds together. ``rounds-no-mining`` is the ablation:
the same rounds with the mining switched off (class-balanced fine-tuning only),
which tells how much of hardmine's result the mined curriculum itself adds.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from hardmine.config import RunConfig
from hardmine.errors import HardmineError
from hardmine.inference import Callback
from hardmine.io import write_csv
from hardmine.rounds import run_rounds
from hardmine.runfolder import Run
from hardmine.steps import evaluate, train_round

BASELINES: dict[str, dict[str, str]] = {
    "ce": {"loss": "ce", "sampling": "none"},
    "weighted-ce": {"loss": "weighted-ce", "sampling": "none"},
    "oversample": {"loss": "ce", "sampling": "oversample"},
    "focal": {"loss": "focal", "sampling": "none"},
}
# The same rounds with every mining effect switched off: no hardness or neighbour boost, no quarantine.
NO_MINING = {"alpha": 0.0, "beta": 0.0, "quarantine": "none"}
METHODS = (*BASELINES, "rounds-no-mining", "hardmine")
REPORTED = ("auroc", "auprc", "sens_at_spec90", "pauc_sens80", "sensitivity", "specificity")


def epoch_budget(config: RunConfig, n_rounds: int) -> int:
    """Epochs a hardmine run with ``n_rounds`` mining rounds trains in total (beyond head-only epochs)."""
    return config.train.epochs + n_rounds * config.rounds.epochs_per_round(config.train.epochs)


def compare(
    config: RunConfig,
    out: str | os.PathLike,
    seeds: list[int],
    n_rounds: int = 3,
    methods: list[str] | None = None,
    callback: Callback | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every method for every seed; return (per-run rows, mean/std summary).

    Runs live in ``out/<method>/seed-<s>/`` and resume when called again.
    Writes ``out/compare_runs.csv`` and ``out/compare.csv``.
    """
    out = Path(out)
    methods = list(METHODS if methods is None else methods)
    if not methods or not set(methods) <= set(METHODS):
        raise HardmineError(f"methods {methods}: expected one or more of {', '.join(METHODS)}")
    budget = epoch_budget(config, n_rounds)
    note = callback or (lambda event, info: None)
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        for method in methods:
            note("compare_start", {"method": method, "seed": seed})
            train_cfg = replace(config.train, seed=seed)
            if method in ("hardmine", "rounds-no-mining"):
                mining = config.mining if method == "hardmine" else replace(config.mining, **NO_MINING)
                run = Run.create(out / method / f"seed-{seed}", replace(config, train=train_cfg, mining=mining))
                test = run_rounds(run, n_rounds, resume=True, callback=callback, finish_outputs=False)["test"]
            else:
                train_cfg = replace(train_cfg, epochs=budget, **BASELINES[method])
                run = Run.create(out / method / f"seed-{seed}", replace(config, train=train_cfg))
                if not (run.round_dir(0) / "metrics.json").exists():
                    train_round(run, 0, callback=callback)
                test = evaluate(run, 0, "test", callback=callback)
            rows.append({"method": method, "seed": seed, "epochs": budget} | {k: test[k] for k in REPORTED})
    runs = pd.DataFrame(rows)
    summary = runs.groupby("method", sort=False)[list(REPORTED)].agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    summary = summary.reset_index()
    write_csv(out / "compare_runs.csv", runs)
    write_csv(out / "compare.csv", summary)
    return runs, summary
