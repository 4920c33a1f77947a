"""Active learning on the demo data: which acquisition finds melanomas and raises test sens@spec90 per label.

The cheap path of issue 23 (the one users with a frozen backbone take too): for
each seed, a backbone is trained once on a small labeled seed set (natural
prior, whole lesions, from the training split); every round then refits a
class-balanced logistic head on the frozen embeddings of the labeled images
(seconds), tunes the threshold on validation by cost, scores the pool (the rest
of the training split) and asks each acquisition function for the next batch;
a simulated oracle answers from the hidden labels (``--oracle-error`` flips a
share of its answers). Validation and test are fixed and never labeled from.

Prints, per acquisition and budget (labels spent beyond the seed set): the
melanomas found, test sens@spec90 / AUPRC / AUROC (mean over seeds) and the
paired difference in sens@spec90 against random with a seeds-then-lesions
bootstrap interval; then the labels each needed to reach random's final
sens@spec90.

    python benchmarks/bench_active.py --work /tmp/active --n 4000 --seeds 0 1 2 3 4

No figure of this script's is in RESULTS.md yet: see the issue 23 note.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from hardmine.core.acquisition import ACQUISITION, acquire
from hardmine.core.paired import METRICS, paired_difference
from hardmine.core.splits import grouped_split
from hardmine.data.sources import load_samples
from hardmine.data.synth import generate_demo
from hardmine.engine.runtime import Engine
from hardmine.engine.train import fit
from hardmine.record.config import ThresholdConfig, TrainConfig


def seed_set(train: pd.DataFrame, size: int, rng: np.random.Generator) -> np.ndarray:
    """Rows of whole random lesions of the training split, about ``size`` images (the natural prior)."""
    lesions = rng.permutation(train["group"].unique())
    sizes = train.groupby("group").size()
    chosen = lesions[np.cumsum(sizes[lesions].to_numpy()) <= size]
    return np.flatnonzero(train["group"].isin(set(chosen)).to_numpy())


def embed(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, labeled: np.ndarray, config: TrainConfig,
          out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Train a backbone on the labeled seed set once; normalised embeddings of every split in its space."""
    engine = Engine(config)
    model = engine.build_model()
    fit(model, engine.dataset(train.iloc[labeled], train=True), engine.dataset(val), config, out)
    model = engine.load_model(out / "model.pt")
    _, train_emb, center = engine.score(model, train)
    _, val_emb, _ = engine.score(model, val, center=center)
    _, test_emb, _ = engine.score(model, test, center=center)
    return np.asarray(train_emb), np.asarray(val_emb), np.asarray(test_emb)


def refit(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    return LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(x, y)


def run_method(name: str, seed: int, emb: tuple, y: tuple, groups: np.ndarray, start: np.ndarray, budget: int,
               rounds: int, oracle_error: float) -> list[dict]:  # fmt: skip
    """One acquisition function from one seed set: a row per budget (test probabilities kept for pairing)."""
    train_emb, val_emb, test_emb = emb
    train_y, val_y, _ = y
    rng = np.random.default_rng(1000 + seed)
    answers = train_y.copy()
    wrong = rng.random(len(answers)) < oracle_error
    answers[wrong] = 1 - answers[wrong]  # the oracle's mistakes, fixed per seed
    labeled = np.zeros(len(train_y), dtype=bool)
    labeled[start] = True
    threshold_rule = ThresholdConfig()
    rows = []
    for r in range(rounds + 1):
        head = refit(train_emb[labeled], answers[labeled])
        threshold = threshold_rule.choose(val_y, head.predict_proba(val_emb)[:, 1])
        test_prob = head.predict_proba(test_emb)[:, 1]
        rows.append({"method": name, "seed": seed, "labels": int(labeled.sum() - len(start)),
                     "found": int(train_y[labeled & ~np.isin(np.arange(len(train_y)), start)].sum()),
                     "test": test_prob, "threshold": threshold})  # fmt: skip
        if r == rounds:
            break
        pool = np.flatnonzero(~labeled)
        pool_prob = head.predict_proba(train_emb[pool])[:, 1]
        picked, _ = acquire(name, pool_prob, train_emb[pool], min(budget, len(pool)), groups=groups[pool],
                            threshold=threshold, labeled_embeddings=train_emb[labeled],
                            labeled_labels=answers[labeled], labeled_prob=head.predict_proba(train_emb[labeled])[:, 1],
                            seed=seed * 100 + r)  # fmt: skip
        labeled[pool[picked]] = True
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--n", type=int, default=4000, help="demo images")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--seed-set", type=int, default=200, help="labeled images to start from")
    parser.add_argument("--budget", type=int, default=50, help="labels per round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=15, help="epochs of the backbone on the seed set")
    parser.add_argument("--oracle-error", type=float, default=0.0)
    parser.add_argument("--methods", nargs="+", default=list(ACQUISITION))
    args = parser.parse_args(argv)

    data = args.work / f"demo-{args.n}-{args.size}"
    if not (data / "HAM10000_metadata.csv").exists():
        generate_demo(data, n=args.n, size=args.size, seed=0)
    table, _ = load_samples(data)
    split = grouped_split(table["label"].to_numpy(), table["group"].to_numpy(), seed=0)
    parts = [table[split == name].reset_index(drop=True) for name in ("train", "val", "test")]
    train, val, test = parts
    y = tuple(p["label"].to_numpy() for p in parts)
    config = TrainConfig(image_size=args.size, epochs=args.epochs, batch_size=64, device="cpu", sampling="oversample")
    rows = []
    for seed in args.seeds:
        start = seed_set(train, args.seed_set, np.random.default_rng(seed))
        emb = embed(train, val, test, start, replace(config, seed=seed), args.work / f"backbone-{args.n}-{seed}")
        for name in args.methods:
            rows += run_method(name, seed, emb, y, train["group"].to_numpy(), start, args.budget, args.rounds,
                               args.oracle_error)  # fmt: skip
    report(pd.DataFrame(rows), y[2], test["group"].to_numpy(), train["label"].mean(), args)


def report(frame: pd.DataFrame, test_y: np.ndarray, test_groups: np.ndarray, base_rate: float, args) -> None:
    seeds = sorted(frame["seed"].unique())
    print(f"pool base rate {base_rate:.3f}; {len(seeds)} seeds; seed set {args.seed_set}; batches of {args.budget}; "
          f"oracle error {args.oracle_error}")  # fmt: skip
    print("method      labels  found  sens@spec90  auprc  auroc  d sens@spec90 vs random [95%]")
    final = {}
    for (name, labels), group in frame.groupby(["method", "labels"], sort=False):
        group = group.sort_values("seed")
        scores = np.stack(group["test"].to_numpy())
        means = {m: np.mean([METRICS[m](test_y, s) for s in scores]) for m in METRICS}
        base = frame[(frame["method"] == "random") & (frame["labels"] == labels)].sort_values("seed")
        diff = ""
        if name != "random" and len(base) == len(group):
            result = paired_difference(test_y, test_groups, scores, np.stack(base["test"].to_numpy()),
                                       METRICS["sens_at_spec90"], n_boot=1000)  # fmt: skip
            diff = f"{result.estimate:+.3f} [{result.low:+.3f}, {result.high:+.3f}] {result.verdict}"
        print(f"{name:11s} {labels:6d} {group['found'].mean():6.1f}  {means['sens_at_spec90']:11.3f}  "
              f"{means['auprc']:.3f}  {means['auroc']:.3f}  {diff}")  # fmt: skip
        final.setdefault(name, []).append((labels, means["sens_at_spec90"]))
    target = final["random"][-1][1] if "random" in final else None
    if target is not None:
        print(f"labels needed to reach random's final sens@spec90 ({target:.3f}):")
        for name, curve in final.items():
            reached = next((labels for labels, value in curve if value >= target), None)
            print(f"  {name:11s} {reached if reached is not None else 'not reached'}")


if __name__ == "__main__":
    main()
