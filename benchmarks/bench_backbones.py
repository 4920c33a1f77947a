"""Which backbone round 0 should train: the tiny CNN from scratch, EfficientNet-Lite0 frozen, or fine-tuned.

The measurement behind hardmine's default model (README, "The model"). On one data
set and one grouped split, each backbone's round 0 (oversampled, threshold by cost
10:1 on validation) is trained with seeds 0..S-1; every pair of backbones is compared on
the same test images, paired per seed, with a bootstrap over seeds and then test
lesions (:func:`hardmine.core.paired.paired_difference`). Wall time per run is
printed too (a frozen backbone fits its head on embeddings: seconds).

    python benchmarks/bench_backbones.py --work W --data demo1200 --size 128 --seeds 0 1 2 3 4 \\
        --finetune-epochs 5 --tiny-epochs 20

Each run is kept under ``W/<backbone>/seed-S`` and reused when called again.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from substrates import BACKBONES, data_folder

from hardmine.core.paired import METRICS, paired_difference
from hardmine.record.config import DataConfig, RunConfig, TrainConfig
from hardmine.run.opened import Run
from hardmine.run.steps import metrics_on_test, train_round


def run_backbone(name: str, data: Path, out: Path, seed: int, args) -> tuple[pd.DataFrame, float]:
    """Round 0 of backbone ``name`` with seed ``seed``: its test predictions and training seconds."""
    epochs = args.tiny_epochs if name == "tiny" else args.finetune_epochs
    size = args.tiny_size if name == "tiny" else args.size
    train = TrainConfig(**BACKBONES[name], image_size=size, epochs=epochs, seed=seed, device="cpu",
                        num_workers=0, lr=args.finetune_lr if name == "pretrained-finetune" else 3e-3)  # fmt: skip
    run = Run.create(out, RunConfig(DataConfig(data=str(data)), train))
    start = time.perf_counter()
    if not run.metrics_path(0).exists():
        train_round(run, 0)
    seconds = time.perf_counter() - start
    metrics_on_test(run, 0)
    return run.preds(0, "test"), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--data", default="demo1200", help="a data folder, or demoN: demo data of N images")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--size", type=int, default=128, help="image size of the pretrained backbones")
    parser.add_argument("--tiny-size", type=int, default=64)
    parser.add_argument("--tiny-epochs", type=int, default=20)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--finetune-lr", type=float, default=1e-3)
    args = parser.parse_args()
    data = data_folder(args.data, args.work, args.size)
    preds: dict[str, list[pd.DataFrame]] = {}
    for name in args.backbones:
        for seed in args.seeds:
            table, seconds = run_backbone(name, data, args.work / name / f"seed-{seed}", seed, args)
            preds.setdefault(name, []).append(table)
            print(f"{name} seed {seed}: {seconds:.0f} s", flush=True)
    first = preds[args.backbones[0]][0]
    labels = first["label"].to_numpy()
    samples = pd.read_csv(args.work / args.backbones[0] / "seed-0" / "samples.csv", dtype={"id": str})
    groups = samples.set_index("id").loc[first.index, "group"].to_numpy()
    print(f"\ntest: {len(labels)} images, {int(labels.sum())} positive, {len(set(groups))} lesions; "
          f"means over seeds {args.seeds}")  # fmt: skip
    for name in args.backbones:
        scores = np.stack([p.loc[first.index, "prob_pos"].to_numpy() for p in preds[name]])
        means = {metric: np.mean([fn(labels, row) for row in scores]) for metric, fn in METRICS.items()}
        print(f"  {name:22s} " + "  ".join(f"{metric} {value:.3f}" for metric, value in means.items()))
    print("\npaired differences (row minus column), 95% bootstrap over seeds then test lesions")
    for i, a in enumerate(args.backbones):
        for b in args.backbones[i + 1:]:
            sa = np.stack([p.loc[first.index, "prob_pos"].to_numpy() for p in preds[a]])
            sb = np.stack([p.loc[first.index, "prob_pos"].to_numpy() for p in preds[b]])
            cells = []
            for metric, fn in METRICS.items():
                found = paired_difference(labels, groups, sa, sb, fn)
                cells.append(f"{metric} {found.estimate:+.3f} [{found.low:+.3f}, {found.high:+.3f}] {found.verdict}")
            print(f"  {a} - {b}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
