"""External validation of a `hardmine compare` output on a fresh demo set it never saw.

The compare's own test split holds ~34 melanomas, so one melanoma moves its
sensitivity by 0.03. This script draws a second demo set with another seed
(default 2300 images, ~230 melanomas, ~48 of them amelanotic), scores every
compared run's chosen model on it (the best round of round-based methods, and
round 0 of hardmine for reference), and prints AUROC, sensitivity at 90%
specificity, and that sensitivity on the amelanotic melanomas alone (the rare
hard subtype), mean and std over seeds. Planted label flips are scored against
the class they were drawn as, so label noise does not cap the figures.

    python benchmarks/bench_external.py --compare cmp [--data-seed 7] [--n 2300]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from hardmine.data import ImageDataset, load_samples
from hardmine.inference import predict
from hardmine.metrics import binary_metrics, softmax
from hardmine.runfolder import Run
from hardmine.synth import generate_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compare", type=Path, required=True, help="output folder of `hardmine compare`")
    parser.add_argument("--data-seed", type=int, default=7)
    parser.add_argument("--n", type=int, default=2300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate_demo(tmp, n=args.n, seed=args.data_seed)
        table, _ = load_samples(tmp)
        planted = pd.read_csv(Path(tmp) / "planted.csv")
        flipped = table["id"].isin(planted.loc[planted["kind"] == "flipped", "image_id"]).to_numpy()
        amelanotic = table["id"].isin(planted.loc[planted["detail"] == "amelanotic", "image_id"]).to_numpy()
        drawn = np.where(flipped, 1 - table["label"].to_numpy(), table["label"].to_numpy())
        rows = []
        for run_dir in sorted(args.compare.glob("*/seed-*")):
            report = run_dir / "report.json"
            best = json.loads(report.read_text())["best_round"] if report.exists() else 0
            rounds = {run_dir.parent.name: best} | ({f"{run_dir.parent.name} round 0": 0} if best else {})
            run = Run.open(run_dir)
            dataset = ImageDataset(table, run.config.train.image_size)
            for method, r in rounds.items():
                model = run.load_model(run.round_dir(r) / "model.pt")
                prob = softmax(predict(model, dataset, num_workers=0)[0])[:, 1]
                spec90 = np.quantile(prob[drawn == 0], 0.9, method="higher")
                metrics = binary_metrics(drawn, prob, 0.5)
                caught = prob[amelanotic & (drawn == 1)] > spec90
                rows.append({"method": method, "seed": run_dir.name, "auroc": metrics["auroc"],
                             "sens_at_spec90": metrics["sens_at_spec90"],
                             "amelanotic_sens_at_spec90": float(caught.mean())})  # fmt: skip
    summary = pd.DataFrame(rows).groupby("method")[["auroc", "sens_at_spec90", "amelanotic_sens_at_spec90"]]
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(summary.agg(["mean", "std"]).to_string())
    print(f"external set: {int(drawn.sum())} melanomas ({int((amelanotic & (drawn == 1)).sum())} amelanotic), "
          f"{int((drawn == 0).sum())} nevi")  # fmt: skip


if __name__ == "__main__":
    main()
