"""Mining at scale: select + expand + weights on synthetic embeddings.

For N = 10k, 100k and 1M embeddings (d = 512, clustered like a trained
network's, 5% seeds, k = 10) this prints the wall time of one mining step
(select + faiss expand + curriculum weights), the time of a plain numpy
brute-force kNN for the same seeds where that is feasible (and the ratio),
recall@10 of the index used (IVF above the exact-search limit) against exact
search on a query sample, and the peak RSS of the process.

    python benchmarks/bench_mining.py [--sizes 10000 100000 1000000] [--dim 512]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from hardmine.core import curriculum
from hardmine.core.index import NeighbourIndex, exact_neighbours
from hardmine.core.mining import expand, select


def clustered_embeddings(n: int, dim: int, rng: np.random.Generator, clusters: int = 200) -> np.ndarray:
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        block = centres[rng.integers(0, clusters, stop - start)]
        block += 0.6 * rng.standard_normal((stop - start, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def bench(n: int, dim: int, seed_frac: float, k: int, brute_max: int, rng: np.random.Generator) -> dict:
    emb = clustered_embeddings(n, dim, rng)
    labels = (rng.random(n) < 0.1).astype(np.int64)
    prob = np.clip(0.25 + 0.4 * labels + 0.25 * rng.standard_normal(n), 0, 1)
    groups = np.arange(n) // 2
    start = time.perf_counter()
    # a threshold-free quota of 5% seeds: all candidates, capped by max_frac
    sel = select(labels, prob, threshold=0.5, band=10.0, max_frac=seed_frac)
    t_select = time.perf_counter() - start
    start = time.perf_counter()
    index = NeighbourIndex().build(emb)
    t_build = time.perf_counter() - start
    start = time.perf_counter()
    exp = expand(emb, sel.index, labels, groups, strength=sel.hardness[sel.index], k=k, min_sim=0.3, index=index)
    t_expand = time.perf_counter() - start
    start = time.perf_counter()
    hard = np.zeros(n)
    hard[sel.index] = sel.hardness[sel.index]
    w = curriculum.weights(labels, hard, exp.contribution)
    t_weights = time.perf_counter() - start
    total = t_select + t_build + t_expand + t_weights
    mining_rss = peak_rss_gib()  # before the reference computations below
    queries = sel.index[: min(len(sel.index), 1000)]
    _, ids = index.search(emb[queries], k)
    _, ref = exact_neighbours(emb, emb[queries], k) if n <= 200_000 else _exact_faiss(emb, queries, k)
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, ref, strict=True)]))
    brute = float("nan")
    if n <= brute_max:
        start = time.perf_counter()
        for chunk in np.array_split(sel.index, max(1, len(sel.index) // 512)):
            exact_neighbours(emb, emb[chunk], k + 1)
        brute = time.perf_counter() - start
    return {
        "N": n, "seeds": len(sel.index), "index": index.kind, "select_s": t_select, "build_s": t_build,
        "expand_s": t_expand, "weights_s": t_weights, "total_s": total, "numpy_knn_s": brute,
        "numpy/hardmine": brute / (t_build + t_expand) if brute == brute else float("nan"),
        "recall@10": recall, "weights_mean": float(w.mean()), "peak_rss_GiB": mining_rss,
    }  # fmt: skip


def _exact_faiss(emb: np.ndarray, queries: np.ndarray, k: int):
    return NeighbourIndex(exact_max=len(emb)).build(emb).search(emb[queries], k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed-frac", type=float, default=0.05)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--brute-max", type=int, default=100_000, help="largest N for the numpy brute-force kNN")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = [bench(n, args.dim, args.seed_frac, args.k, args.brute_max, rng) for n in args.sizes]
    cols = list(rows[0])
    print(" | ".join(f"{c:>14}" for c in cols))
    for row in rows:
        print(" | ".join(f"{v:>14.3f}" if isinstance(v, float) else f"{v!s:>14}" for v in row.values()))


if __name__ == "__main__":
    main()
