"""Which training-set scores mine better: in-sample, out-of-fold or training dynamics?

Trains round 0 on the demo data, scores the training split three ways, mines
each, and prints, per source: recall of the planted hard cases among seeds +
neighbours (against their base rate), how many planted label flips are
seed-worthy, and the share of those quarantined instead of upweighted.

    python benchmarks/bench_score_sources.py [--n 2300] [--epochs 8] [--folds 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hardmine.mining import MiningConfig, mine, select
from hardmine.rounds import DataConfig, Run, RunConfig, ScoringConfig, mining_inputs, score_round, train_round
from hardmine.synth import generate_demo
from hardmine.train import TrainConfig


def planted_metrics(run: Run, scores: pd.DataFrame, emb: np.ndarray, source: str, planted: pd.DataFrame) -> dict:
    part = run.part("train")
    labels = part["label"].to_numpy()
    threshold = float(pd.read_json(run.round_dir(0) / "metrics.json", typ="series")["threshold"])
    prob, dynamics = mining_inputs(scores, source)
    result = mine(labels, prob, emb, threshold, MiningConfig(), part["group"].to_numpy(), dynamics=dynamics)
    hard = part["id"].isin(planted.loc[planted.kind == "hard", "image_id"]).to_numpy()
    flipped = part["id"].isin(planted.loc[planted.kind == "flipped", "image_id"]).to_numpy()
    mined = result.hard_mask() | (result.neighbour > 0)
    worthy = select(labels, prob, threshold, MiningConfig().hardness).candidates & flipped
    return {
        "source": source,
        "hard_recall": mined[hard].mean(),
        "mined_share": mined.mean(),
        "hard_lift": mined[hard].mean() / max(mined.mean(), 1e-9),
        "flips": int(flipped.sum()),
        "flips_seed_worthy": int(worthy.sum()),
        "flips_quarantined": int((result.quarantined & worthy).sum()),
        "flips_upweighted": int((result.hard_mask() & flipped).sum()),
        "quarantined_total": int(result.quarantined.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2300)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate_demo(data, n=args.n, seed=args.seed)
        planted = pd.read_csv(data / "planted.csv")
        config = RunConfig(DataConfig(data=str(data)), TrainConfig(epochs=args.epochs, seed=args.seed, device="cpu"))
        run = Run.create(Path(tmp) / "run", config)
        train_round(run, 0)
        rows = []
        for source in ("insample", "dynamics", "oof"):
            start = time.perf_counter()
            score_round(run, 0, ScoringConfig(source=source, oof_folds=args.folds))
            seconds = time.perf_counter() - start
            scores = pd.read_csv(run.round_dir(0) / "scores.csv", dtype={"id": str})
            emb = np.load(run.round_dir(0) / "embeddings.npy")
            rows.append(planted_metrics(run, scores, emb, source, planted) | {"score_seconds": seconds})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
