"""Active learning on the loop as shipped: each step trains on every answer, then its model asks the next batch.

For each seed, the lesions of a labeled HAM10000-layout folder (the demo data, or
``make_digits.py``'s digits) are split once into an unlabeled pool (a CSV whose
``dx`` column only the simulated oracle reads) and a labeled part, which
hardmine splits into train / val / test by lesion as it always does (fractions
``--split``, split seed = the seed). Then every run spec ``method:update[:curriculum]``
runs the same code path as

    hardmine round --data LABELED --out RUN --pool pool.csv --budget B --oracle dx --n K --update U ...

(``Run.create`` then :func:`hardmine.run.active.active_rounds`): round 0 on the
labeled training split, then K times a query by the newest model, the oracle's
answers added with ``label``'s code, and a step trained on every answer by the
update mode. Each run works on its own copy (hard links) of the labeled folder,
so its answers are its own. Validation and test are the run's own and never
labeled from; round 0 is the same for every spec of a seed.

Prints per spec and budget: labels, melanomas found, validation and test
sens@spec90 / AUPRC / AUROC (means over seeds); the area under the budget curve
(AUBC, Lüth et al. 2023: the mean over the K + 1 budgets) of test sens@spec90
with a paired bootstrap (seeds, then each seed's test lesions) against random
and against the best other function (chosen on validation AUBC); the labels each
needs to reach random's final test sens@spec90; the melanoma share of the first
three batches against the pool's rate; seconds per step.

    python benchmarks/bench_active.py --work W --data demo4000 --budget 40 --batches 6
    python benchmarks/bench_active.py --work W2 --data demo3000 --backbone pretrained --size 128 \
        --specs random:head margin:head hardmine:head typical:head --default hardmine:head
    python benchmarks/bench_active.py --work W --data W/digits/pool --augment light --budget 25 --batches 6

A finished run is kept (``W/<data>/seed-S/<spec>/result.json``) and not run again.
Figures: RESULTS.md, "Active learning on the loop as shipped".

``--backbone`` picks the substrate (``benchmarks/substrates.py``): ``tiny``, ``pretrained`` (frozen: round 0
and every step fit the head, so specs name the update ``head``) or ``pretrained-finetune``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from substrates import BACKBONES, data_folder  # benchmarks/substrates.py

from hardmine.core.paired import METRICS
from hardmine.record.config import DataConfig, RoundsConfig, RunConfig, ThresholdConfig, TrainConfig
from hardmine.run.active import active_rounds
from hardmine.run.opened import Run

# every acquisition under the default update; the other updates (and the curriculum) with the default acquisition
DEFAULT_SPECS = ("random:finetune", "margin:finetune", "coreset:finetune", "positive:finetune", "typical:finetune",
                 "balanced:finetune", "hardmine:finetune", "hardmine:retrain", "hardmine:head",
                 "hardmine:finetune:curriculum")  # fmt: skip
CURVE = ("sens_at_spec90", "auprc", "auroc")



def partition(source: Path, out: Path, pool_frac: float, seed: int) -> tuple[Path, Path]:
    """Split ``source``'s lesions: ``pool_frac`` of them into ``out/pool.csv`` (``id, path, group, dx``), the rest
    into the labeled folder ``out/labeled`` (metadata and hard links of its images; the pool's in ``out/pool``).
    Made once per seed."""
    labeled, pool_csv = out / "labeled", out / "pool.csv"
    if pool_csv.exists():
        return labeled, pool_csv
    meta = pd.read_csv(source / "HAM10000_metadata.csv", dtype=str)
    files = {p.stem: p for p in source.rglob("*.jpg")}
    lesions = meta["lesion_id"].unique()
    rng = np.random.default_rng(1000 + seed)
    in_pool = set(rng.permutation(lesions)[: int(len(lesions) * pool_frac)])
    pooled = meta["lesion_id"].isin(in_pool)
    (labeled / "images").mkdir(parents=True, exist_ok=True)
    for image_id in meta.loc[~pooled, "image_id"]:
        os.link(files[image_id], labeled / "images" / f"{image_id}.jpg")
    meta[~pooled].to_csv(labeled / "HAM10000_metadata.csv", index=False)
    pool = meta[pooled]
    (out / "pool").mkdir(exist_ok=True)
    for image_id in pool["image_id"]:  # a pool CSV's paths stay inside its own folder
        os.link(files[image_id], out / "pool" / f"{image_id}.jpg")
    pd.DataFrame({"id": pool["image_id"], "path": [f"pool/{i}.jpg" for i in pool["image_id"]],
                  "group": pool["lesion_id"], "dx": pool["dx"]}).to_csv(pool_csv, index=False)  # fmt: skip
    return labeled, pool_csv


def run_spec(spec: str, labeled: Path, pool_csv: Path, out: Path, seed: int, args) -> dict:
    """One spec on one seed through the shipped loop; the learning curve and every step's probabilities."""
    result_path = out / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    method, update, *extra = spec.split(":")
    if out.exists():
        shutil.rmtree(out)  # an interrupted run starts again: its answers live in its own data copy
    data = out / "data"
    shutil.copytree(labeled, data, copy_function=os.link)
    config = RunConfig(
        data=DataConfig(data=str(data), split=tuple(args.split), split_seed=seed),
        train=TrainConfig(**BACKBONES[args.backbone], image_size=args.size, epochs=args.epochs, batch_size=32,
                          device="cpu", sampling="oversample", augment=args.augment, seed=seed, threads=1),
        threshold=ThresholdConfig(),
        rounds=RoundsConfig(update=update, step_curriculum="curriculum" in extra,
                            **({"strategy": "head"} if args.backbone == "pretrained" else {})),
    )  # fmt: skip
    start = time.perf_counter()
    run = Run.create(out / "run", config)
    report, _, labeled_batches = active_rounds(run, args.batches, pool_csv, args.budget, method=method, oracle="dx")
    seconds = time.perf_counter() - start
    curve = report["learning_curve"]["steps"]
    steps = []
    for row in curve:
        preds = {split: pd.read_csv(run.preds_path(row["round"], split), dtype={"id": str})
                 for split in ("val", "test")}  # fmt: skip
        steps.append({"round": row["round"], "labels": row["labels"], "positives": row["positives"],
                      "batch": row.get("batch"), "batch_positives": row.get("batch_positives"),
                      "pool_rate": row.get("pool_rate"),
                      "val": preds["val"]["prob_pos"].tolist(), "test": preds["test"]["prob_pos"].tolist(),
                      "val_label": preds["val"]["label"].tolist(), "test_label": preds["test"]["label"].tolist(),
                      "test_id": preds["test"]["id"].tolist()})  # fmt: skip
    round0_s = json.loads(run.metrics_path(0).read_text()).get("train_s", 0.0)
    result = {"spec": spec, "seed": seed, "seconds": seconds, "round0_train_s": round0_s,
              "step_s": (seconds - round0_s) / max(1, len(curve) - 1), "steps": steps,
              "test_groups": run.part("test").set_index("id").loc[steps[0]["test_id"], "group"].tolist(),
              "handed_back": report["handed_back"]["round"]}  # fmt: skip
    result_path.write_text(json.dumps(result))
    return result


def aubc(values: np.ndarray) -> float:
    """Area under the budget curve over equally spaced budgets, normalised to [0, 1] (trapezoid)."""
    return float(np.trapezoid(values) / (len(values) - 1)) if len(values) > 1 else float(values[0])


def paired_bootstrap(results_a: list[dict], results_b: list[dict], statistic, n_boot: int = 1000,
                     seed: int = 0) -> tuple[float, float, float]:  # fmt: skip
    """Mean over seeds of statistic(a) - statistic(b), each seed on its own test set, with a percentile interval
    from resampling the seeds and then each seed's test lesions (the same draw for both).

    ``statistic(result, rows)``: a number from one run's steps on test rows ``rows``."""
    rng = np.random.default_rng(seed)
    members = []
    for a in results_a:
        codes = np.unique(np.asarray(a["test_groups"]), return_inverse=True)[1]
        members.append([np.flatnonzero(codes == g) for g in range(codes.max() + 1)])
    full = [np.arange(len(a["test_groups"])) for a in results_a]
    estimate = np.mean([statistic(a, rows) - statistic(b, rows) for a, b, rows in zip(results_a, results_b, full,
                                                                                      strict=True)])  # fmt: skip
    diffs = []
    for _ in range(n_boot):
        seeds = rng.integers(0, len(results_a), len(results_a))
        total = []
        for s in seeds:
            groups = members[s]
            rows = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
            total.append(statistic(results_a[s], rows) - statistic(results_b[s], rows))
        diffs.append(np.mean(total))
    low, high = np.nanpercentile(diffs, [2.5, 97.5])
    return float(estimate), float(low), float(high)


def curve_on(result: dict, rows: np.ndarray | None = None, split: str = "test",
             metric: str = "sens_at_spec90") -> np.ndarray:  # fmt: skip
    """(steps,) ``metric`` of each step on ``split``'s rows ``rows`` (None: all of them)."""
    y = np.asarray(result["steps"][0][f"{split}_label"])
    rows = np.arange(len(y)) if rows is None else rows
    return np.array([METRICS[metric](y[rows], np.asarray(step[split])[rows]) for step in result["steps"]])


def shown(estimate: float, low: float, high: float) -> str:
    verdict = "better" if low > 0 else "worse" if high < 0 else "level"
    return f"{estimate:+.3f} [{low:+.3f}, {high:+.3f}] {verdict}"


def report(results: dict[str, list[dict]], default: str) -> None:
    """Every figure of the module docstring, from the runs' results (``results[spec]``: one per seed, same order)."""
    specs = list(results)
    seeds = [r["seed"] for r in results[specs[0]]]
    first = results[specs[0]][0]
    print(f"{len(seeds)} seeds {seeds}; batches of {first['steps'][1]['batch'] if len(first['steps']) > 1 else '?'}; "
          f"pool rate {first['steps'][1]['pool_rate']:.3f}")  # fmt: skip
    print("\nper budget, means over seeds: labels, melanomas found (queried), val / test sens@spec90, AUPRC, AUROC")
    for spec in specs:
        runs = results[spec]
        k = min(len(r["steps"]) for r in runs)
        for i in range(k):
            labels = np.mean([r["steps"][i]["labels"] for r in runs])
            found = np.mean([r["steps"][i]["positives"] - r["steps"][0]["positives"] for r in runs])
            cells = []
            for split in ("val", "test"):
                for metric in CURVE:
                    cells.append(np.mean([curve_on(r, None, split, metric)[i] for r in runs]))
            print(f"  {spec:28s} {labels:6.0f} {found:6.1f}   val " + " ".join(f"{c:.3f}" for c in cells[:3])
                  + "   test " + " ".join(f"{c:.3f}" for c in cells[3:]))

    def mean_aubc(spec: str, split: str) -> float:
        return float(np.mean([aubc(curve_on(r, None, split)) for r in results[spec]]))

    def test_aubc(r: dict, rows: np.ndarray) -> float:
        return aubc(curve_on(r, rows))

    for metric in ("sens_at_spec90", "auprc"):
        def on_test(r: dict, rows: np.ndarray, metric: str = metric) -> float:
            return aubc(curve_on(r, rows, "test", metric))

        print(f"\nAUBC of {metric} (mean over seeds): val / test; paired test AUBC differences against random "
              f"under the same update and against {default}")  # fmt: skip
        for spec in specs:
            others = [o for o in dict.fromkeys(("random:" + spec.split(":")[1], default)) if o in results and o != spec]
            against = [f"vs {o}: {shown(*paired_bootstrap(results[spec], results[o], on_test))}" for o in others]
            val = np.mean([aubc(curve_on(r, None, "val", metric)) for r in results[spec]])
            test = np.mean([aubc(curve_on(r, None, "test", metric)) for r in results[spec]])
            print(f"  {spec:28s} {val:.3f} / {test:.3f}   {'; '.join(against)}")
    if default in results:
        update = default.split(":")[1]
        others = [s for s in specs if s != default and s.split(":")[1:] == [update] and not s.startswith("random:")]
        if others:
            best = max(others, key=lambda s: mean_aubc(s, "val"))
            print(f"\n{default} against the best other function on validation AUBC ({best}):")
            overall = paired_bootstrap(results[default], results[best], test_aubc)
            print(f"  test AUBC {shown(*overall)}")
            k = min(len(r["steps"]) for r in results[default])
            for i in range(1, k):
                per_budget_best = max(others, key=lambda s, i=i: np.mean([curve_on(r, None, "val")[i]
                                                                          for r in results[s]]))  # fmt: skip
                diff = paired_bootstrap(results[default], results[per_budget_best],
                                        lambda r, rows, i=i: curve_on(r, rows)[i])
                print(f"  budget {i} ({np.mean([r['steps'][i]['labels'] for r in results[default]]):.0f} labels), "
                      f"best other on val {per_budget_best}: {shown(*diff)}")
    print("\nlabels beyond round 0 to reach random's final mean test sens@spec90 (first reached / held from)")
    for update in sorted({s.split(':')[1] for s in specs}):
        random = f"random:{update}"
        if random not in results:
            continue
        target = np.mean([curve_on(r)[-1] for r in results[random]])
        random_labels = np.mean([r["steps"][-1]["labels"] - r["steps"][0]["labels"] for r in results[random]])
        for spec in [s for s in specs if s.split(":")[1] == update]:
            runs = results[spec]
            k = min(len(r["steps"]) for r in runs)
            mean = np.array([np.mean([curve_on(r)[i] for r in runs]) for i in range(k)])
            labels = np.array([np.mean([r["steps"][i]["labels"] - r["steps"][0]["labels"] for r in runs])
                               for i in range(k)])  # fmt: skip
            reached = np.flatnonzero(mean >= target)
            held = [i for i in range(k) if (mean[i:] >= target).all()]
            first, since = (f"{labels[i[0]]:.0f} ({labels[i[0]] / random_labels:.0%})" if len(i) else "no"
                            for i in (reached, held))  # fmt: skip
            print(f"  {spec:28s} target {target:.3f}: {first} / {since}")
    print("\nmelanoma share of the first three batches against the pool's rate; seconds per step (mean)")
    for spec in specs:
        runs = results[spec]
        share = np.mean([sum(s["batch_positives"] for s in r["steps"][1:4]) / sum(s["batch"] for s in r["steps"][1:4])
                         for r in runs])  # fmt: skip
        rate = np.mean([np.mean([s["pool_rate"] for s in r["steps"][1:4]]) for r in runs])
        step_s, round0_s = (np.mean([r[key] for r in runs]) for key in ("step_s", "round0_train_s"))
        print(f"  {spec:28s} {share:.3f} ({share / rate:.1f}x pool {rate:.3f})   {step_s:.1f} s/step, round 0 "
              f"{round0_s:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--data", type=str, required=True,
                        help="a HAM10000-layout folder, or demoN: the demo data of N images (made in --work)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--specs", nargs="+", default=list(DEFAULT_SPECS))
    parser.add_argument("--default", default="hardmine:finetune")
    parser.add_argument("--pool-frac", type=float, default=0.7)
    parser.add_argument("--split", type=float, nargs=3, default=[0.25, 0.375, 0.375])
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--augment", default="dermoscopy")
    parser.add_argument("--backbone", choices=tuple(BACKBONES), default="tiny")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    source = data_folder(args.data, args.work, args.size)
    name = source.name if source.name != "pool" else source.parent.name
    results: dict[str, list[dict]] = {spec: [] for spec in args.specs}
    for seed in args.seeds:
        labeled, pool_csv = partition(source, args.work / name / f"seed-{seed}", args.pool_frac, seed)
        for spec in args.specs:
            out = args.work / name / f"seed-{seed}" / spec.replace(":", "-")
            if args.report_only and not (out / "result.json").exists():
                continue
            results[spec].append(run_spec(spec, labeled, pool_csv, out, seed, args))
            print(f"seed {seed} {spec}: {results[spec][-1]['seconds']:.0f} s", flush=True)
    results = {spec: runs for spec, runs in results.items() if len(runs) == len(args.seeds)}
    report(results, args.default)


if __name__ == "__main__":
    main()
