"""Nearest-neighbour search over L2-normalised embeddings with faiss.

Similarity is the inner product, i.e. cosine similarity for normalised rows
(higher = more similar). Up to ``exact_max`` vectors the search is exact
(``IndexFlatIP``); above it an inverted-file index (``IndexIVFFlat``, or
``codec="sq8"`` / ``"pq64"`` to compress it) trained on a sample, with ``nlist`` and
``nprobe`` chosen from N unless given. faiss is imported lazily.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pandas as pd

from hardmine.core.errors import HardmineError

EXACT_MAX = 200_000
CHUNK = 262_144  # rows converted and added at a time


def load_faiss():
    """The faiss module, imported on first use (a one-line error naming the package when it is missing)."""
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("faiss is required for neighbour search: pip install faiss-cpu") from exc
    return faiss


def check_codec(codec: str) -> None:
    """Raise :class:`HardmineError` unless ``codec`` is ``flat``, ``sq8`` or ``pqM``."""
    if not re.fullmatch(r"flat|sq8|pq[1-9]\d*", str(codec)):
        raise HardmineError(f"index codec {codec!r} is not valid; expected flat, sq8 or pqM (e.g. pq64)")


def normalise(embeddings: np.ndarray, dtype: str = "float32", center: np.ndarray | None = None) -> np.ndarray:
    """L2-normalise rows so inner product = cosine similarity. (N, D) -> (N, D).

    ``center`` (D,) is subtracted first. Post-ReLU features are all
    non-negative, so raw cosine similarities crowd near 1; centring on the
    training mean spreads them over [-1, 1] and makes ``min_sim`` meaningful.
    """
    if dtype not in ("float32", "float16"):
        raise HardmineError(f"embedding dtype {dtype!r} is not valid; expected float32 or float16")
    emb = np.asarray(embeddings, dtype=np.float32)
    if center is not None:
        emb = emb - np.asarray(center, dtype=np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return (emb / np.maximum(norms, 1e-12)).astype(dtype)


def default_nlist(n: int) -> int:
    """IVF cells: about sqrt(N) (1,000 cells for 1M vectors), at least 1.

    More cells make each probe cheaper but k-means training dearer (it grows
    with nlist x the 39 nlist training vectors); sqrt(N) keeps both in minutes
    at 1M x 512 on two cores."""
    return max(1, min(n // 39, int(math.sqrt(n))))


def default_nprobe(nlist: int) -> int:
    """Cells visited per query: enough for recall@10 >= 0.95 on clustered embeddings."""
    return max(1, min(nlist, int(math.ceil(nlist / 16))))


class NeighbourIndex:
    """Cosine-similarity kNN over normalised embeddings.

    Parameters
    ----------
    exact_max : exact search up to this many vectors, IVF above.
    nlist, nprobe : IVF cells and cells probed (defaults from N).
    codec : how IVF stores vectors: ``flat`` (float32 copy), ``sq8`` (8-bit
        scalar quantisation, 4x smaller) or ``pqM`` (product quantisation with M
        sub-vectors, e.g. ``pq64``: 64 bytes a vector). Compressed codecs'
        candidates (``refine_factor`` x k) are re-ranked exactly against the
        embeddings, which may stay memory-mapped on disk.
    threads : faiss OpenMP threads (default: the CPUs this process may use).
    train_size : vectors sampled to train the IVF quantiser.
    """

    def __init__(
        self,
        exact_max: int = EXACT_MAX,
        nlist: int | None = None,
        nprobe: int | None = None,
        codec: str = "flat",
        threads: int | None = None,
        train_size: int = 100_000,
        seed: int = 0,
        use_gpu: bool = False,
        refine_factor: int = 10,
    ):
        self.exact_max = exact_max
        self.nlist = nlist
        self.nprobe = nprobe
        check_codec(codec)
        self.codec = codec
        self.threads = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
        self.train_size = train_size
        self.seed = seed
        self.use_gpu = use_gpu
        self.refine_factor = refine_factor
        self._vectors = None
        self.index = None
        self.kind = "none"
        self.ntotal = 0

    def build(self, embeddings: np.ndarray) -> NeighbourIndex:
        """Index (N, D) float32/float16 normalised embeddings; returns self.

        ``embeddings`` may be a memory-mapped ``.npy``: it is read in chunks and
        never copied whole. With a compressed codec the index keeps a reference
        to it to re-rank candidates exactly.
        """
        faiss = load_faiss()
        faiss.omp_set_num_threads(int(self.threads))
        x = embeddings
        if x.ndim != 2:
            raise HardmineError(f"embeddings must be a 2-d (N, D) array; got shape {x.shape}")
        n, d = x.shape
        if n == 0:
            raise HardmineError("cannot build an index over zero embeddings")
        if n <= self.exact_max:
            index = faiss.IndexFlatIP(d)
            self.kind = "exact"
        else:
            nlist = self.nlist or default_nlist(n)
            quantizer = faiss.IndexFlatIP(d)
            if self.codec == "sq8":
                index = faiss.IndexIVFScalarQuantizer(
                    quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
                )
                self.kind = f"ivf{nlist}-sq8"
            elif self.codec.startswith("pq"):
                index = faiss.IndexIVFPQ(quantizer, d, nlist, int(self.codec[2:]), 8, faiss.METRIC_INNER_PRODUCT)
                self.kind = f"ivf{nlist}-{self.codec}"
            else:
                index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
                self.kind = f"ivf{nlist}"
            rng = np.random.default_rng(self.seed)
            sample = _as_float32(x[np.sort(rng.choice(n, min(n, max(self.train_size, 39 * nlist)), replace=False))])
            index.train(sample)
            index.nprobe = self.nprobe or default_nprobe(nlist)
            self._vectors = x if self.codec != "flat" else None
        index = self._maybe_gpu(index)
        for start in range(0, n, CHUNK):
            index.add(_as_float32(x[start : start + CHUNK]))
        self.index = index
        self.ntotal = n
        return self

    def _maybe_gpu(self, index):
        faiss = load_faiss()
        if self.use_gpu and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            self._gpu_resources = faiss.StandardGpuResources()
            return faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)
        return index

    def search(self, queries: np.ndarray, k: int, batch_size: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar indexed vectors of each query.

        Returns
        -------
        sims : (Q, k) float32, descending per row (cosine similarity).
        ids : (Q, k) int64 row numbers in the indexed matrix; -1 where fewer
            than k were found (IVF with few probed cells).
        """
        if self.index is None:
            raise HardmineError("the index is empty: call build() first")
        if k < 1:
            raise HardmineError(f"k={k} must be at least 1")
        if k > self.ntotal:
            raise HardmineError(f"k={k} is larger than the {self.ntotal} indexed embeddings")
        q = _as_float32(queries)
        if q.shape[1] != self.index.d:
            raise HardmineError(f"queries have dimension {q.shape[1]}; the index has {self.index.d}")
        sims = np.empty((len(q), k), dtype=np.float32)
        ids = np.empty((len(q), k), dtype=np.int64)
        refine = getattr(self, "_vectors", None) is not None
        depth = min(self.ntotal, k * self.refine_factor) if refine else k
        if refine:  # bound the candidate rows gathered for re-ranking at once
            batch_size = max(1, min(batch_size, 100_000 // depth))
        for start in range(0, len(q), batch_size):
            s, i = self.index.search(q[start : start + batch_size], depth)
            if refine:  # PQ similarities are approximate: re-rank the candidates exactly
                s, i = _rerank(q[start : start + batch_size], i, self._vectors, k)
            sims[start : start + batch_size], ids[start : start + batch_size] = s, i
        return sims, ids


def _rerank(queries: np.ndarray, candidates: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner products of each query with its candidate rows; the top k of them."""
    safe = np.where(candidates >= 0, candidates, 0)
    flat = np.unique(safe)
    lookup = np.searchsorted(flat, safe)
    rows = _as_float32(vectors[flat])
    sims = np.einsum("qd,qcd->qc", queries, rows[lookup])
    sims = np.where(candidates >= 0, sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    ids = np.take_along_axis(candidates, order, axis=1)
    return np.take_along_axis(sims, order, axis=1).astype(np.float32), ids


def _as_float32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise HardmineError(f"embeddings must be a 2-d (N, D) array; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise HardmineError("embeddings contain NaN or infinite values")
    return np.ascontiguousarray(x, dtype=np.float32)


def exact_neighbours(embeddings: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force numpy kNN by inner product (the reference for tests and benchmarks)."""
    sims = _as_float32(queries) @ _as_float32(embeddings).T
    if k < sims.shape[1]:
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        top = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
    top_sims = np.take_along_axis(sims, top, axis=1)
    order = np.lexsort((top, -top_sims), axis=1)  # by similarity, then row number
    ids = np.take_along_axis(top, order, axis=1)
    return np.take_along_axis(sims, ids, axis=1), ids


def near_duplicate_pairs(
    embeddings: np.ndarray,
    ids: np.ndarray,
    partition: np.ndarray,
    min_sim: float = 0.95,
    k: int = 5,
    index: NeighbourIndex | None = None,
) -> pd.DataFrame:
    """Pairs of near-identical embeddings that fall in different parts of a partition.

    Used as a split audit: HAM10000 holds some lesions under more than one
    lesion_id, so a grouped split can still leak them across train/val/test.

    Returns
    -------
    DataFrame ``id_a, part_a, id_b, part_b, similarity`` (each pair once,
    most similar first).
    """
    emb = _as_float32(embeddings)
    partition = np.asarray(partition)
    ids = np.asarray(ids)
    if not len(emb) == len(ids) == len(partition):
        raise HardmineError(
            f"embeddings ({len(emb)}), ids ({len(ids)}) and partition ({len(partition)}) differ in length"
        )
    index = index or NeighbourIndex().build(emb)
    k = min(k + 1, len(emb))
    sims, nbrs = index.search(emb, k)
    rows = np.repeat(np.arange(len(emb)), k)
    cols, sim = nbrs.ravel(), sims.ravel()
    keep = (cols >= 0) & (cols != rows) & (sim >= min_sim)
    rows, cols, sim = rows[keep], cols[keep], sim[keep]
    keep = partition[rows] != partition[cols]
    rows, cols, sim = rows[keep], cols[keep], sim[keep]
    a, b = np.minimum(rows, cols), np.maximum(rows, cols)
    pairs = pd.DataFrame({"a": a, "b": b, "similarity": sim}).drop_duplicates(["a", "b"])
    pairs = pairs.sort_values("similarity", ascending=False, kind="stable")
    return pd.DataFrame(
        {
            "id_a": ids[pairs["a"]],
            "part_a": partition[pairs["a"]],
            "id_b": ids[pairs["b"]],
            "part_b": partition[pairs["b"]],
            "similarity": pairs["similarity"].to_numpy(),
        }
    )
