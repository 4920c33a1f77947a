"""Active learning, cheap path (frozen backbone, head refits): which acquisition finds melanomas per label.

The loop as shipped (each step trains the network on every answer) is ``bench_active.py``; this script
keeps the earlier measurement of issue 23 reproducible (RESULTS.md, "Active learning: which acquisition
saves labels").

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

    python benchmarks/bench_active_cheap.py --work /tmp/active --n 4000 --seeds 0 1 2 3 4

``--oracle-error`` also reports whether the label-suspicion triage quarantines the
oracle's wrong answers; ``--retrain-at`` retrains a backbone on each method's
labeled images at those rounds, to check that the ranking holds off the cheap path.
Figures: RESULTS.md, "Active learning".
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
from hardmine.core.picking import Batch, Picks, Pool, k_center
from hardmine.core.splits import grouped_split
from hardmine.data.sources import load_samples
from hardmine.data.synth import generate_demo
from hardmine.engine.runtime import Engine
from hardmine.engine.train import fit
from hardmine.record.config import ThresholdConfig, TrainConfig


def quota_then_coreset(pool: Pool, budget: int, *, positive_share: float = 0.5) -> Picks:
    """A candidate default measured against the chosen one: the positive quota, then k-center over the whole pool."""
    batch = Batch(pool)
    batch.take(np.argsort(-pool.prob_pos, kind="stable"), lambda i: "quota", int(round(positive_share * budget)))
    rest, _ = k_center(pool, np.flatnonzero(~batch.taken), batch.rows, budget)
    batch.take(rest, lambda i: "diverse", budget)
    return batch.picks()


# candidates measured beside the registered functions, passed to acquire() as functions: never registered
CANDIDATES = ACQUISITION | {"hm-coreset": quota_then_coreset}


def seed_set(train: pd.DataFrame, size: int, rng: np.random.Generator) -> np.ndarray:
    """Rows of whole random lesions of the training split, about ``size`` images (the natural prior)."""
    lesions = rng.permutation(train["group"].unique())
    sizes = train.groupby("group").size()
    chosen = lesions[np.cumsum(sizes[lesions].to_numpy()) <= size]
    return np.flatnonzero(train["group"].isin(set(chosen)).to_numpy())


def embed(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, labeled: np.ndarray, config: TrainConfig,
          out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Train a backbone on the labeled seed set once; normalised embeddings of every split in its space.

    Kept in ``out/embeddings.npz`` and reused by a later call with the same seed set.
    """
    cache = out / "embeddings.npz"
    if cache.exists():
        saved = np.load(cache)
        if np.array_equal(saved["labeled"], labeled):
            return saved["train"], saved["val"], saved["test"]
    engine = Engine(config)
    model = engine.build_model()
    fit(model, engine.dataset(train.iloc[labeled], train=True), engine.dataset(val), config, out)
    model = engine.load_model(out / "model.pt")
    _, train_emb, center = engine.score(model, train)
    _, val_emb, _ = engine.score(model, val, center=center)
    _, test_emb, _ = engine.score(model, test, center=center)
    np.savez(cache, labeled=labeled, train=train_emb, val=val_emb, test=test_emb)
    return np.asarray(train_emb), np.asarray(val_emb), np.asarray(test_emb)


def refit(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    return LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(x, y)


def run_method(name: str, seed: int, emb: tuple, y: tuple, groups: np.ndarray, start: np.ndarray, budget: int,
               rounds: int, oracle_error: float) -> list[dict]:  # fmt: skip
    """One acquisition function from one seed set: a row per budget (test probabilities kept for pairing)."""
    train_emb, val_emb, test_emb = emb
    train_y, val_y, _ = y
    lesion = np.unique(groups, return_inverse=True)[1]
    wrong = (np.random.default_rng(1000 + seed).random(lesion.max() + 1) < oracle_error)[lesion]
    answers = np.where(wrong, 1 - train_y, train_y)  # the oracle's mistakes: whole lesions, fixed per seed
    labeled = np.zeros(len(train_y), dtype=bool)
    labeled[start] = True
    threshold_rule = ThresholdConfig()
    rows = []
    for r in range(rounds + 1):
        head = refit(train_emb[labeled], answers[labeled])
        threshold = threshold_rule.choose(val_y, head.predict_proba(val_emb)[:, 1])
        rows.append({"method": name, "seed": seed, "round": r, "labels": int(labeled.sum() - len(start)),
                     "found": int(train_y[labeled & ~np.isin(np.arange(len(train_y)), start)].sum()),
                     "val": head.predict_proba(val_emb)[:, 1], "test": head.predict_proba(test_emb)[:, 1],
                     "threshold": threshold, "labeled": np.flatnonzero(labeled)})  # fmt: skip
        if r == rounds and oracle_error:
            rows[-1] |= triage(train_emb[labeled], answers[labeled], wrong[labeled], groups[labeled], threshold, seed)
        if r == rounds:
            break
        pool = np.flatnonzero(~labeled)
        pool_prob = head.predict_proba(train_emb[pool])[:, 1]
        picked, _ = acquire(CANDIDATES[name], pool_prob, train_emb[pool], min(budget, len(pool)), groups=groups[pool],
                            threshold=threshold, labeled_embeddings=train_emb[labeled],
                            labeled_labels=answers[labeled],
                            seed=seed * 100 + r)  # fmt: skip
        labeled[pool[picked]] = True
    return rows


def triage(x: np.ndarray, answers: np.ndarray, wrong: np.ndarray, groups: np.ndarray, threshold: float,
           seed: int) -> dict:  # fmt: skip
    """Does the label-suspicion triage catch the oracle's wrong answers among the labeled images?

    The head's out-of-fold probabilities (5 folds grouped by lesion, class-balanced, the ``--triage
    networks`` setting) are the evidence; :func:`hardmine.core.mining.mine` with the default settings
    quarantines. Counts every wrong label in the labeled set.
    """
    from sklearn.model_selection import GroupKFold

    from hardmine.core.mining import MiningConfig, mine

    oof = np.zeros(len(answers))
    for fit_rows, held in GroupKFold(5).split(x, answers, groups):
        oof[held] = refit(x[fit_rows], answers[fit_rows]).predict_proba(x[held])[:, 1]
    prob = refit(x, answers).predict_proba(x)[:, 1]
    result = mine(answers, prob, x, threshold=threshold, config=MiningConfig(), groups=groups, oof_prob=oof, seed=seed)
    upweighted = result.hard_mask() | (result.neighbour > 0)  # a seed or a neighbour, as bench_triage.py counts
    return {"wrong": int(wrong.sum()), "caught": int((result.quarantined & wrong).sum()),
            "quarantined": int(result.quarantined.sum()), "upweighted": int((upweighted & wrong).sum())}


def retrain(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, labeled: np.ndarray, answers: np.ndarray,
            config: TrainConfig, out: Path) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The retraining check: a fresh backbone trained on the labeled images (with their answers); (val, test) P(pos)."""
    engine = Engine(config)
    model = engine.build_model()
    fit(model, engine.dataset(train.iloc[labeled].assign(label=answers[labeled]), train=True), engine.dataset(val),
        config, out)  # fmt: skip
    model = engine.load_model(out / "model.pt")
    return tuple(engine.score(model, part)[0]["prob_pos"].to_numpy() for part in (val, test))


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
    parser.add_argument("--methods", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--data", type=Path, help="a labeled folder (HAM10000 layout) instead of generated demo data")
    parser.add_argument("--augment", default="dermoscopy")
    parser.add_argument("--retrain-at", type=int, nargs="*", default=[], help="rounds at which to check the ranking "
                        "by retraining the backbone on the labeled images (slow)")  # fmt: skip
    parser.add_argument("--retrain-methods", nargs="+", default=["random", "coreset", "positive", "hardmine"])
    args = parser.parse_args(argv)

    data = args.data or args.work / f"demo-{args.n}-{args.size}"
    if args.data is None and not (data / "HAM10000_metadata.csv").exists():
        generate_demo(data, n=args.n, size=args.size, seed=0)
    table, _ = load_samples(data)
    split = grouped_split(table["label"].to_numpy(), table["group"].to_numpy(), seed=0)
    parts = [table[split == name].reset_index(drop=True) for name in ("train", "val", "test")]
    train, val, test = parts
    y = tuple(p["label"].to_numpy() for p in parts)
    config = TrainConfig(model="tiny", image_size=args.size, epochs=args.epochs, batch_size=64, device="cpu",
                         sampling="oversample", augment=args.augment)  # fmt: skip
    rows = []
    for seed in args.seeds:
        start = seed_set(train, args.seed_set, np.random.default_rng(seed))
        emb = embed(train, val, test, start, replace(config, seed=seed), args.work / f"backbone-{data.name}-{seed}")
        for name in args.methods:
            rows += run_method(name, seed, emb, y, train["group"].to_numpy(), start, args.budget, args.rounds,
                               args.oracle_error)  # fmt: skip
    frame = pd.DataFrame(rows)
    frame.to_pickle(args.work / f"rows-{data.name}-err{args.oracle_error}.pkl")  # to report again without rerunning
    report(frame, y, test["group"].to_numpy(), train["label"].mean(), args)
    if args.oracle_error:
        report_triage(frame)
    if args.retrain_at:
        checks = []
        chosen = frame["method"].isin(args.retrain_methods) & frame["round"].isin(args.retrain_at)
        for row in frame[chosen].itertuples():
            answers = y[0]  # the retraining check runs with a truthful oracle
            out = args.work / f"retrain-{data.name}-{row.method}-{row.seed}-{row.round}"
            val_prob, test_prob = retrain(train, val, test, row.labeled, answers, replace(config, seed=row.seed), out)
            checks.append({"method": row.method, "seed": row.seed, "round": row.round, "labels": row.labels,
                           "found": row.found, "val": val_prob, "test": test_prob})  # fmt: skip
        retrained = pd.DataFrame(checks)
        retrained.to_pickle(args.work / f"retrain-{data.name}.pkl")
        print("retraining check: a fresh backbone on each method's labeled images (with the seed set)")
        report(retrained, y, test["group"].to_numpy(), train["label"].mean(), args)


def report_triage(frame: pd.DataFrame) -> None:
    """The triage of the oracle's wrong answers at the last budget, per method (sums over seeds)."""
    last = frame[frame["round"] == frame["round"].max()]
    print("triage of wrong answers at the last budget (sums over seeds): wrong labels, quarantined among them, "
          "upweighted among them, quarantined in all")  # fmt: skip
    for name, part in last.groupby("method"):
        wrong, caught, upweighted, quarantined = (int(part[c].sum()) for c in ("wrong", "caught", "upweighted",
                                                                               "quarantined"))  # fmt: skip
        print(f"  {name:18s} {wrong:4d} wrong, caught {caught:3d} ({caught / max(wrong, 1):.0%}), upweighted "
              f"{upweighted:3d} ({upweighted / max(wrong, 1):.0%}), quarantined {quarantined:4d}")  # fmt: skip


def report(frame: pd.DataFrame, y: tuple, test_groups: np.ndarray, base_rate: float, args,
           default: str = "hardmine") -> None:  # fmt: skip
    """Per budget: means, then the default's paired difference against random and against the best other.

    The best other acquisition at a budget is chosen on validation (mean sens@spec90), never on test.
    """
    _, val_y, test_y = y
    sens = METRICS["sens_at_spec90"]
    methods = set(frame["method"])
    seeds = sorted(frame["seed"].unique())
    print(f"pool base rate {base_rate:.3f}; {len(seeds)} seeds; seed set {args.seed_set}; batches of {args.budget}; "
          f"oracle error {args.oracle_error}; data {args.data or f'demo n={args.n}'}")  # fmt: skip
    frame = frame.sort_values(["method", "round", "seed"], kind="stable")
    frame["val_sens"] = [sens(val_y, p) for p in frame["val"]]
    frame["test_sens"] = [sens(test_y, p) for p in frame["test"]]
    frame["auprc"] = [METRICS["auprc"](test_y, p) for p in frame["test"]]
    frame["auroc"] = [METRICS["auroc"](test_y, p) for p in frame["test"]]

    def scores(name: str, r: int) -> np.ndarray:
        return np.stack(frame[(frame["method"] == name) & (frame["round"] == r)]["test"].to_numpy())

    def versus(name: str, other: str, r: int) -> str:
        result = paired_difference(test_y, test_groups, scores(name, r), scores(other, r), sens, n_boot=1000)
        return f"{result.estimate:+.3f} [{result.low:+.3f}, {result.high:+.3f}] {result.verdict}"

    # rounds, not label counts, pair the methods: a batch that keeps lesions whole can come back a few images short
    columns = ["labels", "found", "val_sens", "test_sens", "auprc", "auroc"]
    means = frame.groupby(["method", "round"], sort=False)[columns].mean()
    print("method             labels  found  val s@s90  test s@s90  auprc  auroc  vs random [95%]")
    for (name, r), row in means.iterrows():
        diff = versus(name, "random", r) if name != "random" and "random" in methods and r else ""
        print(f"{name:18s} {row['labels']:6.0f} {row['found']:6.1f}  {row['val_sens']:9.3f}  {row['test_sens']:10.3f}  "
              f"{row['auprc']:.3f}  {row['auroc']:.3f}  {diff}")  # fmt: skip
    if default in methods:
        print(f"{default} against the best other acquisition at each budget (chosen on validation):")
        for r in [r for r in sorted(frame["round"].unique()) if r > 0]:
            others = means.xs(r, level="round").drop(index=default)["val_sens"]
            best = str(others.idxmax())
            print(f"  round {r} ({means.loc[(default, r), 'labels']:.0f} labels)  best other {best:18s} "
                  f"{versus(default, best, r)}")  # fmt: skip
    if "random" in methods:
        last = frame["round"].max()
        target = means.loc[("random", last), "test_sens"]
        print(f"labels needed to reach random's final test sens@spec90 ({target:.3f}): first reached / held from")
        for name in means.index.get_level_values("method").unique():
            curve = means.loc[name]
            reached = curve.index[curve["test_sens"].to_numpy() >= target]
            held = [r for r in curve.index if (curve.loc[r:, "test_sens"] >= target).all()]
            first = f"{curve.loc[reached[0], 'labels']:.0f}" if len(reached) else "not reached"
            since = f"{curve.loc[held[0], 'labels']:.0f}" if held else "not held"
            print(f"  {name:18s} {first} / {since}")


if __name__ == "__main__":
    main()
