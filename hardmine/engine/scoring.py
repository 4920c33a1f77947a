"""Scoring a dataset with a model: the score table (:mod:`hardmine.core.scores`) and embeddings from one forward.

Three sources of training-set scores, with a trade-off:

* ``insample`` (the round's model on its own training images): one pass, but
  over-confident: the model fitted these very images, label errors included.
* ``oof`` (``--oof K``): K fold models, each scoring the images it did not
  see; honest probabilities at the cost of K extra short trainings.
* ``dynamics``: statistics of the per-epoch training losses recorded during
  training (mean confidence, variability, forgetting events), free.

Embeddings always come from the round's model so that all samples live in one
space for neighbour search.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hardmine.core.index import normalise
from hardmine.core.scores import score_table


def score_dataset(
    model,
    dataset,
    ids: Sequence,
    *,
    threshold: float = 0.5,
    device: str = "cpu",
    batch_size: int = 128,
    tta: bool = False,
    precision: str = "auto",
    num_workers: int | None = None,
    embedding_dtype: str = "float32",
    center: np.ndarray | str | None = "self",
    callback=None,
    embeddings_path: str | os.PathLike | None = None,
    raw_path: str | os.PathLike | None = None,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Score every sample of ``dataset`` with one forward pass (optionally + flip TTA).

    ``center``: ``"self"`` centres embeddings on this dataset's mean; an array
    centres on a given mean (e.g. the training set's, to embed val/test in the
    same space); None does not centre.

    ``embeddings_path``: stream the embeddings to this ``.npy`` during the pass
    (raw rows into a memory-mapped file, then a chunked centre-and-normalise
    pass), so memory does not grow with N; the result is returned memory-mapped.
    Under torchrun each rank writes its own rows and rank 0 finishes the file. ``raw_path`` (with
    ``embeddings_path``) keeps the raw embeddings there too, as a ``.npy`` (a head refit's features).

    Returns
    -------
    table : score table (:data:`SCORE_COLUMNS`), rows in dataset order.
    embeddings : (N, D) centred, L2-normalised embeddings from the same forward.
    center : (D,) the mean that was subtracted (zeros if none).
    """
    from hardmine.engine.inference import predict, resolve_device

    device = resolve_device(device)
    if embeddings_path is None:
        logits, emb = predict(model, dataset, batch_size, device, precision, num_workers, tta=tta, callback=callback)
        if isinstance(center, str):
            center = emb.mean(axis=0)
        center = np.zeros(emb.shape[1], np.float32) if center is None else np.asarray(center, np.float32)
        table = score_table(ids, dataset.labels, logits, threshold)
        return table, normalise(emb, embedding_dtype, center), center
    writer = _StreamedEmbeddings(Path(embeddings_path), len(dataset), model.embedding_dim)
    logits, _ = predict(model, dataset, batch_size, device, precision, num_workers, tta=tta, callback=callback,
                        embedding_sink=writer.write)  # fmt: skip
    center = writer.finish(center, embedding_dtype, keep_raw=raw_path)
    return score_table(ids, dataset.labels, logits, threshold), np.load(embeddings_path, mmap_mode="r"), center


def score_features(
    features: np.ndarray,
    head_weight: np.ndarray,
    head_bias: np.ndarray,
    ids: Sequence,
    labels: np.ndarray,
    *,
    threshold: float = 0.5,
    embedding_dtype: str = "float32",
    center: np.ndarray | str | None = "self",
    embeddings_path: str | os.PathLike,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """:func:`score_dataset` without a forward pass, for a model that is a cached backbone's raw
    ``features`` (N, D) under a last layer ``head_weight`` (C, D), ``head_bias`` (C,): the ``head``
    strategy's rounds, whose backbone is round 0's. Same outputs, same embedding file."""
    from hardmine.engine import distributed

    n, dim = features.shape
    writer = _StreamedEmbeddings(Path(embeddings_path), n, dim)
    logits = np.empty((n, len(head_bias)), np.float32)
    for start in range(0, n, writer.CHUNK):
        rows = np.arange(start, min(start + writer.CHUNK, n))
        chunk = np.asarray(features[rows], np.float32)
        logits[rows] = chunk @ np.asarray(head_weight, np.float32).T + np.asarray(head_bias, np.float32)
        if distributed.is_main():  # the embedding file's rows, and their sum, once
            writer.write(rows, chunk)
    center = writer.finish(center, embedding_dtype)
    return score_table(ids, labels, logits, threshold), np.load(embeddings_path, mmap_mode="r"), center


class _StreamedEmbeddings:
    """Raw embeddings into a memory-mapped ``<name>.raw.npy``, then normalised into ``<name>``."""

    CHUNK = 65_536

    def __init__(self, path: Path, n: int, dim: int):
        from hardmine.engine import distributed

        self.path, self.raw_path = path, path.with_name(path.stem + ".raw.npy")
        if distributed.is_main():
            path.parent.mkdir(parents=True, exist_ok=True)
            np.lib.format.open_memmap(self.raw_path, mode="w+", dtype=np.float32, shape=(n, dim)).flush()
        distributed.barrier()
        self.raw = np.load(self.raw_path, mmap_mode="r+")
        self.sum = np.zeros(dim, dtype=np.float64)

    def write(self, rows: np.ndarray, embeddings: np.ndarray) -> None:
        self.raw[rows] = embeddings
        self.sum += embeddings.sum(axis=0, dtype=np.float64)

    def finish(self, center: np.ndarray | str | None, dtype: str, keep_raw: str | os.PathLike | None = None,
               ) -> np.ndarray:  # fmt: skip
        from hardmine.core.io import atomic_path
        from hardmine.engine import distributed

        self.raw.flush()
        total = distributed.all_reduce_sum(self.sum)
        n, dim = self.raw.shape
        if isinstance(center, str):
            center = total / max(n, 1)
        center = np.zeros(dim, np.float32) if center is None else np.asarray(center, np.float32)
        distributed.barrier()  # every rank's rows are on disk
        if distributed.is_main():
            with atomic_path(self.path, ".npy") as tmp:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, dim))
                for start in range(0, n, self.CHUNK):
                    out[start : start + self.CHUNK] = normalise(self.raw[start : start + self.CHUNK], dtype, center)
                out.flush()
                del out
            del self.raw
            if keep_raw is not None:
                os.replace(self.raw_path, keep_raw)
            else:
                self.raw_path.unlink()
        distributed.barrier()
        return center
