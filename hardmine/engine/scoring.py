"""Per-sample scores and embeddings of a dataset.

Score directions: ``loss``, ``entropy`` and ``el2n`` are higher = harder;
``logit_margin`` is the true class's logit minus the other's, so *lower* =
harder (negative = wrong side of 0.5). ``prob_pos`` is P(positive class), not
P(true label).

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

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from hardmine.core.errors import HardmineError
from hardmine.core.index import normalise
from hardmine.core.metrics import softmax

SCORE_COLUMNS = ("id", "label", "prob_pos", "logit_margin", "loss", "pred", "correct", "entropy", "el2n")


def score_table(ids: Sequence, labels: np.ndarray, logits: np.ndarray, threshold: float = 0.5) -> pd.DataFrame:
    """Per-sample score table from logits.

    Parameters
    ----------
    ids : (N,) sample ids.
    labels : (N,) 0/1 labels.
    logits : (N, 2) logits (or (N,) probabilities of the positive class when
        only probabilities are known; margins are then log-odds).
    threshold : predict positive when ``prob_pos >= threshold``.

    Returns
    -------
    DataFrame with :data:`SCORE_COLUMNS`.
    """
    labels = np.asarray(labels).astype(np.int64)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 1:
        logits = logits_from_probs(logits)
    if logits.shape != (len(labels), 2):
        raise HardmineError(f"logits have shape {logits.shape}; expected ({len(labels)}, 2)")
    if len(ids) != len(labels):
        raise HardmineError(f"{len(ids)} ids for {len(labels)} labels")
    probs = softmax(logits)
    rows = np.arange(len(labels))
    p_true = np.clip(probs[rows, labels], 1e-12, 1.0)
    onehot = np.eye(2)[labels]
    pred = (probs[:, 1] >= threshold).astype(np.int64)
    return pd.DataFrame(
        {
            "id": np.asarray(ids),
            "label": labels,
            "prob_pos": probs[:, 1],
            "logit_margin": logits[rows, labels] - logits[rows, 1 - labels],
            "loss": -np.log(p_true),
            "pred": pred,
            "correct": pred == labels,
            "entropy": -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(1),
            "el2n": np.linalg.norm(probs - onehot, axis=1),
        }
    )


def logits_from_probs(prob_pos: np.ndarray) -> np.ndarray:
    """(N,) positive-class probabilities to (N, 2) logits ``[0, log-odds]``."""
    p = np.clip(np.asarray(prob_pos, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.stack([np.zeros_like(p), np.log(p) - np.log1p(-p)], axis=1)


def mining_inputs(scores: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The P(positive) that drives mining for a score source, and the dynamics hardness if recorded."""
    dynamics = scores["dynamics"].to_numpy() if "dynamics" in scores else None
    if source == "oof":
        if "prob_pos_oof" not in scores:
            raise HardmineError("scores.csv has no prob_pos_oof column: score with --scores oof first")
        return scores["prob_pos_oof"].to_numpy(), dynamics
    if source == "dynamics":
        if "confidence" not in scores:
            raise HardmineError("scores.csv has no training-dynamics columns (dynamics.npz missing)")
        conf = scores["confidence"].to_numpy()
        return np.where(scores["label"].to_numpy() == 1, conf, 1 - conf), dynamics
    return scores["prob_pos"].to_numpy(), dynamics


def dynamics_scores(losses: np.ndarray, p_true: np.ndarray) -> pd.DataFrame:
    """Training-dynamics statistics (dataset cartography, forgetting events).

    Parameters
    ----------
    losses, p_true : (E, N) per-epoch loss and probability of the true label of
        each training sample as recorded during training; NaN where a sample
        was not drawn in an epoch.

    Returns
    -------
    DataFrame (N rows): ``confidence`` (mean p_true; lower = harder),
    ``variability`` (std of p_true), ``forgetting`` (times a sample went from
    right to wrong between draws), ``dynamics`` (hardness in [0, 1], higher =
    harder: 1 - confidence).
    """
    p = np.asarray(p_true, dtype=np.float64)
    seen = np.isfinite(p)
    count = seen.sum(0)
    filled = np.where(seen, p, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(count > 0, filled.sum(0) / np.maximum(count, 1), 0.5)
        variance = np.where(count > 0, (np.where(seen, (p - confidence) ** 2, 0)).sum(0) / np.maximum(count, 1), 0)
    forgetting = np.zeros(p.shape[1], dtype=np.int64)
    last_correct = np.full(p.shape[1], -1)  # -1 unknown, 0 wrong, 1 right
    for epoch in range(p.shape[0]):
        now = np.where(seen[epoch], (p[epoch] > 0.5).astype(int), -1)
        forgetting += (last_correct == 1) & (now == 0)
        last_correct = np.where(now >= 0, now, last_correct)
    return pd.DataFrame(
        {
            "confidence": confidence,
            "variability": np.sqrt(variance),
            "forgetting": forgetting,
            "dynamics": 1 - confidence,
        }
    )


def score_dataset(
    model,
    dataset,
    ids: Sequence,
    *,
    threshold: float = 0.5,
    device: str = "cpu",
    batch_size: int = 128,
    tta: bool = False,
    amp: bool = True,
    num_workers: int | None = None,
    embedding_dtype: str = "float32",
    center: np.ndarray | str | None = "self",
    callback=None,
    embeddings_path: str | os.PathLike | None = None,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Score every sample of ``dataset`` with one forward pass (optionally + flip TTA).

    ``center``: ``"self"`` centres embeddings on this dataset's mean; an array
    centres on a given mean (e.g. the training set's, to embed val/test in the
    same space); None does not centre.

    ``embeddings_path``: stream the embeddings to this ``.npy`` during the pass
    (raw rows into a memory-mapped file, then a chunked centre-and-normalise
    pass), so memory does not grow with N; the result is returned memory-mapped.
    Under torchrun each rank writes its own rows and rank 0 finishes the file.

    Returns
    -------
    table : score table (:data:`SCORE_COLUMNS`), rows in dataset order.
    embeddings : (N, D) centred, L2-normalised embeddings from the same forward.
    center : (D,) the mean that was subtracted (zeros if none).
    """
    from hardmine.engine.inference import predict, resolve_device

    device = resolve_device(device)
    if embeddings_path is None:
        logits, emb = predict(model, dataset, batch_size, device, amp, num_workers, tta=tta, callback=callback)
        if isinstance(center, str):
            center = emb.mean(axis=0)
        center = np.zeros(emb.shape[1], np.float32) if center is None else np.asarray(center, np.float32)
        table = score_table(ids, dataset.labels, logits, threshold)
        return table, normalise(emb, embedding_dtype, center), center
    writer = _StreamedEmbeddings(Path(embeddings_path), len(dataset), model.embedding_dim)
    logits, _ = predict(model, dataset, batch_size, device, amp, num_workers, tta=tta, callback=callback,
                        embedding_sink=writer.write)  # fmt: skip
    center = writer.finish(center, embedding_dtype)
    return score_table(ids, dataset.labels, logits, threshold), np.load(embeddings_path, mmap_mode="r"), center


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

    def finish(self, center: np.ndarray | str | None, dtype: str) -> np.ndarray:
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
            self.raw_path.unlink()
        distributed.barrier()
        return center


def _claim_fold_dir(work_dir: Path, settings: dict) -> None:
    """Clear ``work_dir`` when its fold networks were trained with other settings, then record these."""
    from hardmine.core.io import read_json, write_json

    record = work_dir / "settings.json"
    if work_dir.exists() and (not record.exists() or read_json(record) != json.loads(json.dumps(settings))):
        shutil.rmtree(work_dir)  # resuming them would continue another schedule, or reuse other networks
    work_dir.mkdir(parents=True, exist_ok=True)
    if not record.exists():
        write_json(record, settings)


def out_of_fold_logits(
    table: pd.DataFrame,
    config,
    k: int,
    work_dir: str | os.PathLike,
    seed: int = 0,
    callback=None,
) -> np.ndarray:
    """Logits of each training sample from a fold model that never saw it.

    ``table`` is the training part of the sample table; folds are grouped (no
    lesion in two folds) and stratified. Each fold model is trained with
    ``config`` (a :class:`hardmine.engine.train.TrainConfig`) on the other folds and
    its last epoch scores the held-out fold (the best-epoch choice would peek
    at the very samples being scored). Fold runs live in ``work_dir/fold-K``
    and resume, or are reused as they are once trained; ``work_dir/settings.json``
    records what they were trained with (configuration, folds, seed, sample ids),
    and a ``work_dir`` trained with other settings is cleared first.

    Returns
    -------
    (N, 2) float32 logits in ``table`` order.
    """
    from hardmine.core.splits import grouped_folds
    from hardmine.engine.runtime import Engine
    from hardmine.engine.train import fit

    if k < 2:
        raise HardmineError(f"out-of-fold scoring needs k >= 2 folds; got {k}")
    table = table.reset_index(drop=True)
    n_groups_pos = table.loc[table["label"] == 1, "group"].nunique()
    if n_groups_pos < k:
        raise HardmineError(f"only {n_groups_pos} positive groups for {k} folds; use a smaller --oof")
    fold_of = grouped_folds(table["label"].to_numpy(), table["group"].to_numpy(), [1 / k] * k, seed)
    from hardmine.engine import distributed

    recipe = {key: value for key, value in asdict(config).items() if key not in ("device", "num_workers")}
    settings = {"train": recipe, "folds": k, "seed": seed,
                "ids": hashlib.sha256("\n".join(map(str, table["id"])).encode()).hexdigest()}
    distributed.on_main(lambda: _claim_fold_dir(Path(work_dir), settings))  # every rank waits for rank 0's claim
    logits = np.zeros((len(table), 2), dtype=np.float32)
    engine = Engine(config)
    for fold in range(k):
        fit_idx, held_idx = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
        out = Path(work_dir) / f"fold-{fold}"
        held_ds = engine.dataset(table.iloc[held_idx])
        model = engine.build_model(seed_offset=fold)
        if callback:
            callback("fold_start", {"fold": fold, "folds": k})
        fit(model, engine.dataset(table.iloc[fit_idx], train=True), held_ds, config, out, callback=callback)
        logits[held_idx] = engine.predict(engine.load_model(out / "last.pt"), held_ds)[0]
    return logits
