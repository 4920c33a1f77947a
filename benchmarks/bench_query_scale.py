"""Selection cost of a query over a large pool: time and peak memory of each acquisition function.

The pool's embeddings are written once to a ``.npy`` file and memory-mapped, as
``RUN/round-RRR/embeddings.npy`` is; probabilities and lesion ids are arrays in
memory (8 bytes an image). Each acquisition function runs in a fresh process so
that its peak resident memory (``VmHWM``, which counts the mapped pages it
touched) is its own. Scoring the pool with the network is not included: that
is inference, measured by ``bench_scoring.py``.

    python benchmarks/bench_query_scale.py --work /tmp/scale --n 1000000 --dim 512 --budget 50

Target (issue 23): the default selects from 1M images in under 1 minute and under 4 GiB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def make_pool(work: Path, n: int, dim: int, labeled: int, seed: int = 0) -> None:
    """Embeddings (memory-mapped .npy, written in chunks), P(pos) and lesion ids of ``n`` pool images."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"pool-{n}-{dim}.npy"
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, dim)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        x = centres[rng.integers(0, 64, stop - start)] + rng.normal(size=(stop - start, dim)).astype(np.float32)
        out[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()
    del out
    prob = np.clip(rng.beta(0.5, 4, n), 1e-4, 1 - 1e-4)
    groups = np.arange(n) // rng.integers(1, 4)  # lesions of 1-3 images
    lab = rng.normal(size=(labeled, dim)).astype(np.float32)
    np.savez(work / f"pool-{n}-{dim}-rest.npz", prob=prob, groups=groups,
             labeled=lab / np.linalg.norm(lab, axis=1, keepdims=True),
             labels=(rng.random(labeled) < 0.1).astype(int))  # fmt: skip


def select(work: Path, n: int, dim: int, method: str, budget: int) -> dict:
    """One acquisition over the memory-mapped pool; wall time and this process's peak memory."""
    from hardmine.core.acquisition import acquire
    from hardmine.core.io import load_array

    emb = load_array(work / f"pool-{n}-{dim}.npy", mmap=True)
    rest = np.load(work / f"pool-{n}-{dim}-rest.npz")
    start = time.perf_counter()
    rows, _ = acquire(method, rest["prob"], emb, budget, groups=rest["groups"], threshold=0.3,
                      labeled_embeddings=rest["labeled"], labeled_labels=rest["labels"])  # fmt: skip
    seconds = time.perf_counter() - start
    peak = _peak_gib()
    return {"method": method, "seconds": round(seconds, 2), "peak_gib": round(peak, 2), "picked": len(rows)}


def _peak_gib() -> float:
    """This process's peak resident memory: VmHWM (``ru_maxrss`` would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20  # KiB -> GiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--labeled", type=int, default=2000)
    parser.add_argument("--methods", nargs="+", default=["hardmine", "random", "margin", "positive", "seals",
                                                         "coreset"])  # fmt: skip
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one method in this process (the child)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(select(args.work, args.n, args.dim, args.one, args.budget)))
        return
    make_pool(args.work, args.n, args.dim, args.labeled)
    size = (args.work / f"pool-{args.n}-{args.dim}.npy").stat().st_size / 2**30
    print(f"pool {args.n} images x {args.dim} float32 embeddings ({size:.2f} GiB memory-mapped), "
          f"{args.labeled} labeled, budget {args.budget}")  # fmt: skip
    print("method      seconds  peak memory (GiB)  picked")
    for method in args.methods:
        child = subprocess.run([sys.executable, __file__, "--work", str(args.work), "--n", str(args.n), "--dim",
                                str(args.dim), "--budget", str(args.budget), "--one", method],
                               capture_output=True, text=True)  # fmt: skip
        if child.returncode:
            print(f"{method:10s} failed: {child.stderr.strip().splitlines()[-1]}")
            continue
        result = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{method:10s} {result['seconds']:8.2f}  {result['peak_gib']:17.2f}  {result['picked']:6d}")


if __name__ == "__main__":
    main()
