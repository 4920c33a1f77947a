"""Querying the unlabeled pool: score it with the model a run hands back and pick what to label next."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hardmine.core.acquisition import acquire, function_options
from hardmine.core.errors import DataError, HardmineError, warn
from hardmine.core.index import NeighbourIndex
from hardmine.core.io import copy_file, file_digest, write_csv, write_json
from hardmine.data.answers import read_answers
from hardmine.data.pool import copies_of_labeled, load_pool
from hardmine.engine.inference import Callback
from hardmine.engine.runtime import Engine
from hardmine.record.layout import LABEL_DIR, QUERY_FILE, QUERY_INFO, query_dir
from hardmine.record.manifest import Manifest
from hardmine.record.record import RunFolder
from hardmine.run.learning_curve import labels_seen
from hardmine.run.opened import Run
from hardmine.views.labeling import build_label_page

SHOWN_NEIGHBOURS = 4  # labeled look-alikes shown beside each picked image on the labeling page


def open_pool(run: Run, source: str | os.PathLike) -> pd.DataFrame:
    """The pool at ``source`` for ``run``: images already answered left out, images of labeled ones refused,
    images of open batches (asked, not answered yet) left out with a warning.

    Images of a lesion in the run's validation or test split are left out too (with a warning): their
    label would have to join the training split, and a lesion never spans two splits. So are byte copies
    of any labeled image (:func:`~hardmine.data.pool.copies_of_labeled`), named with the split of the
    image they copy: a renamed copy of a test image is never asked. A pool of nothing else is refused.
    """
    answered = set(read_answers(run.config.data.data)["image_id"])
    pool = load_pool(source, labeled=run.table, answered=answered)
    copies = copies_of_labeled(pool, run.table)
    if copies.notna().any():  # a renamed copy of a test image must never be asked: its answer would leak test
        split = dict(zip(run.table["id"], run.split, strict=True))
        shown = copies.index[copies.notna()][:5]
        named = ", ".join(f"{pool['id'][i]} = {copies[i]} ({split[copies[i]]})" for i in shown)
        if copies.notna().all():
            raise DataError(f"--pool {source}: every one of its {len(pool)} image(s) is a byte copy of a labeled "
                            f"image ({named}...); a pool holds images without a label")  # fmt: skip
        warn(f"{int(copies.notna().sum())} pool image(s) are byte copies of labeled images and are left out of the "
             f"query: {named}")  # fmt: skip
        pool = pool[copies.isna()].reset_index(drop=True)
    pending = pending_images(run, answered)
    waiting = pool["id"].isin(set(pending["id"]))
    if waiting.any():  # an open batch can still be answered: never ask its images twice
        open_batches = ", ".join(str(b) for b in sorted(set(pending["batch"])))
        warn(f"{int(waiting.sum())} pool image(s) of open batch(es) {open_batches} wait for answers and are left out "
             "of this query (answers to any open batch are taken by `hardmine label`)")  # fmt: skip
        pool = pool[~waiting].reset_index(drop=True)
    held_out = set(run.table.loc[run.split != "train", "group"])
    outside = pool["group"].isin(held_out)
    if outside.any():
        warn(f"{int(outside.sum())} pool image(s) belong to lesions in the run's validation or test split "
             f"(first: {pool['id'][outside].iloc[0]}); they are left out of the query")  # fmt: skip
        pool = pool[~outside].reset_index(drop=True)
    return pool


def check_budget(budget: int, pool_size: int, source: str | os.PathLike | None = None) -> None:
    """Refuse a ``--budget`` the pool cannot fill, before anything is scored or trained."""
    if not 1 <= budget <= pool_size:
        where = f" (--pool {source})" if source is not None else ""
        raise HardmineError(f"--budget {budget} must be between 1 and the {pool_size} image(s) the pool holds for "
                            f"this query{where}")  # fmt: skip


def query_pool(
    run: Run,
    pool: pd.DataFrame,
    budget: int,
    *,
    method: str = "hardmine",
    options: dict[str, Any] | None = None,
    device: str | None = None,
    callback: Callback | None = None,
    pool_source: str | os.PathLike | None = None,
    pool_rate: float | None = None,
) -> pd.DataFrame:
    """Pick ``budget`` pool images to label with acquisition function ``method`` (and its ``options``,
    :func:`hardmine.core.acquisition.parse_options`); writes ``RUN/query.csv``.

    The model trained on every label so far (:func:`asking_model`) scores the training split and the pool
    in one space (the pool centred
    on the training split's mean embedding), at its validation-tuned threshold; the acquisition
    (:func:`hardmine.core.acquisition.acquire`) sees the training split's embeddings and labels, so
    ``coreset`` and ``hardmine`` can look away from what is labeled and ``seals`` around its melanomas.

    ``pool``: ``id, path, group`` (:func:`open_pool`). Returns the picks in order: ``id, path, group,
    prob_pos`` (P(positive), higher = more likely positive), ``reason``, ``neighbours`` (the ids of
    the nearest labeled training images, nearest first, ``|``-separated), ``sha256`` (the image's bytes
    when asked: ``label`` refuses an image replaced since). ``RUN/query.json`` records
    how the query was made: ``pool_source``, the round whose model asked and the labels and positives it
    saw, and ``pool_rate``, the pool's melanoma rate a batch's share is read against (given, as a simulated
    oracle knows it; else the rate of round 0's training split).
    """
    source, r, seen = asking_model(run)
    engine = Engine(source.run_config().train, device)
    model = engine.load_model(source.verified_model_path(r))
    threshold = source.threshold(r)
    train = run.part("train")
    _, train_emb, center = engine.score(model, train, threshold=threshold, callback=callback)
    pool_scores, pool_emb, _ = engine.score(model, pool.assign(label=0), threshold=threshold, center=center,
                                            callback=callback)  # fmt: skip
    rows, reasons = acquire(method, pool_scores["prob_pos"].to_numpy(), pool_emb, budget, groups=pool["group"],
                            threshold=threshold, labeled_embeddings=train_emb, labeled_labels=train["label"],
                            seed=run.config.train.seed, **(options or {}))  # fmt: skip
    picked = pool.iloc[rows][["id", "path", "group"]].reset_index(drop=True)
    picked["prob_pos"] = pool_scores["prob_pos"].to_numpy()[rows]
    picked["reason"] = reasons
    _, nearest = NeighbourIndex().build(np.ascontiguousarray(train_emb, dtype=np.float32)).search(
        np.ascontiguousarray(pool_emb[rows], dtype=np.float32), min(SHOWN_NEIGHBOURS, len(train)))
    picked["neighbours"] = ["|".join(train["id"].iloc[j] for j in row if j >= 0) for row in nearest]
    picked["sha256"] = [file_digest(path) for path in picked["path"]]  # `label` keeps these bytes or refuses
    write_csv(run.query_path(), picked)
    batch = (run.batches() or [0])[-1] + 1
    if pool_rate is None:  # the pool is unlabeled: read it against the rate the data was labeled at before any query
        pool_rate, rate_from = _initial_rate(run), "round 0's training split"
    else:
        rate_from = "given"
    write_json(run.query_info_path(), {
        "batch": batch, "pool": None if pool_source is None else str(Path(pool_source).resolve()), "method": method,
        "budget": budget,
        "pool_size": len(pool), "round": r, "model": "reference" if source.root != run.root else "round",
        "labels": seen["labels"], "positives": seen["positives"], "pool_rate": pool_rate, "pool_rate_from": rate_from,
        "threshold": threshold, "method_options": function_options(method) | (options or {}),
    })  # fmt: skip
    build_label_page(run.root)
    keep_batch(run, batch)
    return picked


def keep_batch(run: Run, batch: int) -> Path:
    """Keep the latest query (``query.csv``, ``query.json``, the labeling page) as ``queries/NNN/``, so its
    answers are taken whenever they come, and the learning curve can say which model asked it."""
    folder = query_dir(run.root, batch)
    if folder.exists():
        shutil.rmtree(folder)  # left incomplete by an interrupted query (no query.csv): its number is free
    copy_file(run.query_path(), folder / QUERY_FILE)
    copy_file(run.query_info_path(), folder / QUERY_INFO)
    shutil.copytree(run.label_page_path().parent, folder / LABEL_DIR)
    return folder


def pending_images(run: Run, answered: set[str]) -> pd.DataFrame:
    """Images of kept batches that wait for an answer (``id, batch``): not among the ``answered`` ids."""
    frames = [run.batch_query(b)[["id"]].assign(batch=b) for b in run.batches()]
    pending = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"id": [], "batch": []})
    return pending[~pending["id"].isin(answered)].reset_index(drop=True)


def asking_model(run: Run) -> tuple[RunFolder, int, dict[str, int]]:
    """The model that asks the next query, as (folder, round, the labels and positives it saw): the one the
    run hands back when it saw every label so far, else the newest round trained on every label.

    Raises :class:`HardmineError` when no round saw the answers added since the latest one: the next
    query must come from a model trained on every answer (``hardmine round --out RUN`` trains it).
    """
    manifest = Manifest(run.root)
    train = run.part("train")["label"]
    completed = manifest.completed_rounds()  # none for a run trained by `hardmine train` alone: its model asks
    trained = [q for q in completed if labels_seen(run, manifest, q) == len(train)]
    if completed and not trained:
        raise HardmineError(f"the training split of {run.root} grew to {len(train)} images since its latest round; "
                            f"train on the answers first (`hardmine round --out {run.root}` with the run's options), "
                            "then ask again")  # fmt: skip
    source, r = run.returned()
    if source.root == run.root and trained and r not in trained:  # handed back from before the latest answers
        r = trained[-1]
    # an equal-epochs reference is handed back only while no answer joined since it was trained
    return source, r, {"labels": len(train), "positives": int(train.sum())}


def _initial_rate(run: Run) -> float:
    """The positive rate of the training split round 0 was trained on (the labels the data came with)."""
    info = Manifest(run.root).rounds.get("0", {})
    if info.get("labels"):
        return float(info["positives"]) / float(info["labels"])
    answered = run.table["id"].isin(run.answered_ids())
    original = run.table[(run.split == "train").to_numpy() & ~answered.to_numpy()]
    return float(original["label"].mean())
