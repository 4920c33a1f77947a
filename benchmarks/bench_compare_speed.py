"""Wall time of ``hardmine compare`` before and after a change, side by side and interleaved.

Each seed's 6-method compare (the four baselines, ``no-mining-head``, ``hardmine-head``; tiny
CNN, 32 px, 20 epochs, 3 rounds, CPU) runs once with the code of ``--before`` and once with the
current tree, alternating (before seed 0, after seed 0, before seed 1, ...), each in a fresh
process and a fresh output folder, so both see the same machine load over time. Prints each
pair's seconds and the ratio of the totals, and checks that both versions give the same test
metrics where the change should not move them.

    git worktree add --detach /tmp/hardmine-before <commit>
    python benchmarks/bench_compare_speed.py --before /tmp/hardmine-before --seeds 5 --out /tmp/cmp-speed
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parents[1]

JOB = """
import sys
import hardmine
assert hardmine.__file__.startswith(sys.argv[4]), (hardmine.__file__, sys.argv[4])  # the tree asked for
from hardmine.record.config import DataConfig, RunConfig, TrainConfig
from hardmine.run.compare import compare
data, out, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = RunConfig(DataConfig(data=data), TrainConfig(model="tiny", image_size=32, epochs=20, device="cpu",
                                                      num_workers=0))
compare(config, out, [seed], n_rounds=3, n_boot=200)
"""


def timed(tree: Path, data: Path, out: Path, seed: int) -> float:
    # run from the tree itself: `python -c` puts the working directory first on sys.path
    env = os.environ | {"PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", JOB, str(data), str(out.resolve()), str(seed), str(tree.resolve())],
                   env=env, check=True, stdout=subprocess.DEVNULL, cwd=tree)  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the code to compare against")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("/tmp/hardmine-compare-speed"))
    args = parser.parse_args()
    args.out = args.out.resolve()
    data = args.out / "data"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "hardmine", "demo-data", str(data), "--seed", "0"], check=True,
                       env=os.environ | {"PYTHONPATH": str(HERE)}, stdout=subprocess.DEVNULL)  # fmt: skip
    rows = []
    for seed in range(args.seeds):
        row = {"seed": seed}
        for name, tree in (("before", args.before), ("after", HERE)):
            row[name] = timed(tree, data, args.out / name / f"seed-{seed}", seed)
        rows.append(row)
        print(f"seed {seed}: before {row['before']:.0f} s, after {row['after']:.0f} s, "
              f"{row['before'] / row['after']:.2f}x", flush=True)  # fmt: skip
    table = pd.DataFrame(rows)
    total = table["before"].sum() / table["after"].sum()
    per_seed = table["before"] / table["after"]
    print(f"total: before {table['before'].sum():.0f} s, after {table['after'].sum():.0f} s: {total:.2f}x faster "
          f"(per seed {per_seed.min():.2f}x to {per_seed.max():.2f}x)")  # fmt: skip
    metrics = ["auroc", "sens_at_spec90"]
    for seed in range(args.seeds):
        runs = {name: pd.read_csv(args.out / name / f"seed-{seed}" / "compare_runs.csv").set_index("method")
                for name in ("before", "after")}  # fmt: skip
        diff = (runs["before"][metrics] - runs["after"][metrics]).abs().max().max()
        print(f"seed {seed}: largest test-metric difference before vs after {diff:.3f}")


if __name__ == "__main__":
    main()
