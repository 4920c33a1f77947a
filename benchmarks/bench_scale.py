"""Million-image mining on this machine: wall time, peak memory, recall.

Simulates the files a scoring pass writes for N = 1M training images
(``embeddings.npy`` as float16, 512-d, memory-mapped; ``scores.csv``), then
runs one mining step the way ``hardmine mine`` does (select + triage + faiss
IVF expansion (8-bit scalar-quantised by default) with exact re-ranking + curriculum weights) and prints the
wall time, the peak RSS, and recall@10 of the index against exact search on a
subsample. Targets: under 5 minutes and 4 GiB.

    python benchmarks/bench_scale.py [--n 1000000] [--dim 512] [--codec sq8]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hardmine.core.index import NeighbourIndex, normalise
from hardmine.core.io import write_csv
from hardmine.core.mining import MiningConfig, mine


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_inputs(folder: Path, n: int, dim: int, seed: int = 0) -> None:
    """Clustered float16 embeddings streamed to disk in chunks, and a score table."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((300, dim), dtype=np.float32)
    emb = np.lib.format.open_memmap(folder / "embeddings.npy", mode="w+", dtype=np.float16, shape=(n, dim))
    labels = (rng.random(n) < 0.1).astype(np.int64)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        block = centres[rng.integers(0, len(centres), stop - start)]
        block += 0.6 * rng.standard_normal(block.shape, dtype=np.float32)
        emb[start:stop] = normalise(block, "float16")
    emb.flush()
    del emb
    prob = np.clip(0.25 + 0.4 * labels + 0.2 * rng.standard_normal(n), 0, 1)
    write_csv(folder / "scores.csv", pd.DataFrame({"id": np.arange(n), "label": labels, "prob_pos": prob}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--codec", default="sq8", help="index codec: flat | sq8 | pqM")
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        write_inputs(folder, args.n, args.dim)
        simulate_s = time.perf_counter() - start
        rss_before = peak_rss_gib()
        start = time.perf_counter()
        scores = pd.read_csv(folder / "scores.csv")
        emb = np.load(folder / "embeddings.npy", mmap_mode="r")
        config = MiningConfig(index_codec=args.codec, max_frac=0.05, band=0.5)
        index = NeighbourIndex(codec=args.codec).build(emb)
        build_s = time.perf_counter() - start
        result = mine(scores["label"].to_numpy(), scores["prob_pos"].to_numpy(), emb, threshold=0.5, config=config,
                      groups=np.arange(args.n) // 2, index=index)  # fmt: skip
        wall = time.perf_counter() - start
        peak = peak_rss_gib()
        rng = np.random.default_rng(1)
        queries = np.sort(rng.choice(args.n, args.queries, replace=False))
        q = emb[queries].astype(np.float32)
        _, got = index.search(q, 10)
        best = np.full((len(q), 10), -np.inf, dtype=np.float32)
        best_ids = np.zeros((len(q), 10), dtype=np.int64)
        for lo in range(0, args.n, 100_000):  # exact search in chunks over the memory map
            sims = q @ emb[lo : lo + 100_000].astype(np.float32).T
            both = np.concatenate([best, sims], axis=1)
            ids = np.concatenate([best_ids, np.broadcast_to(np.arange(lo, lo + sims.shape[1]), sims.shape)], axis=1)
            top = np.argsort(-both, axis=1)[:, :10]
            best, best_ids = np.take_along_axis(both, top, 1), np.take_along_axis(ids, top, 1)
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, best_ids, strict=True)]))
    print(f"N={args.n} d={args.dim} index={index.kind} seeds={len(result.seeds)} "
          f"neighbours={int((result.neighbour > 0).sum())} quarantined={int(result.quarantined.sum())}")  # fmt: skip
    print(f"simulated inputs in {simulate_s:.1f} s (peak RSS {rss_before:.2f} GiB)")
    print(
        f"mine (read + index + select + triage + expand + weights): {wall:.1f} s, of which index build {build_s:.1f} s"
    )
    print(f"peak RSS {peak:.2f} GiB; recall@10 against exact search on {args.queries} queries: {recall:.3f}")


if __name__ == "__main__":
    main()
