"""Which training-set scores mine better: in-sample, out-of-fold or training dynamics?

Trains round 0 on the demo data, scores the training split three ways, mines
each, and prints, per source: recall of the planted hard cases among seeds +
neighbours (against their base rate), how many planted label flips are
seed-worthy, and the share of those quarantined instead of upweighted.

    python benchmarks/bench_score_sources.py [--n 2300] [--epochs 20] [--folds 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from hardmine.data.synth import generate_demo
from hardmine.record.config import DataConfig, RunConfig, ScoringConfig, TrainConfig
from hardmine.run.opened import Run
from hardmine.run.steps import mine_round, score_round, train_round
from hardmine.views.planted import round_planted_recovery


def planted_metrics(run: Run, source: str, planted: pd.DataFrame) -> dict:
    """Mine round 0 with ``source`` scores (default options) and measure the planted cases."""
    mine_round(run, 0, source=source)
    return {"source": source} | round_planted_recovery(run.root, 0, planted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2300)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate_demo(data, n=args.n, seed=args.seed)
        planted = pd.read_csv(data / "planted.csv")
        config = RunConfig(DataConfig(data=str(data)),
                           TrainConfig(model="tiny", epochs=args.epochs, seed=args.seed, device="cpu"))
        run = Run.create(Path(tmp) / "run", config)
        train_round(run, 0)
        rows = []
        for source in ("insample", "dynamics", "oof"):
            start = time.perf_counter()
            score_round(run, 0, ScoringConfig(source=source, oof_folds=args.folds))
            seconds = time.perf_counter() - start
            rows.append(planted_metrics(run, source, planted) | {"score_seconds": seconds})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
