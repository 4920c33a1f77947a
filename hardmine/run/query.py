"""Querying the unlabeled pool: score it with the model a run hands back and pick what to label next."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from hardmine.core.acquisition import acquire
from hardmine.core.errors import warn
from hardmine.core.index import NeighbourIndex
from hardmine.core.io import write_csv, write_json
from hardmine.data.answers import read_answers
from hardmine.data.pool import load_pool
from hardmine.engine.inference import Callback
from hardmine.engine.runtime import Engine
from hardmine.run.opened import Run

SHOWN_NEIGHBOURS = 4  # labeled look-alikes shown beside each picked image on the labeling page


def open_pool(run: Run, source: str | os.PathLike) -> pd.DataFrame:
    """The pool at ``source`` for ``run``: images already answered left out, images of labeled ones refused.

    Images of a lesion in the run's validation or test split are left out too (with a warning): their
    label would have to join the training split, and a lesion never spans two splits.
    """
    answered = set(read_answers(run.config.data.data)["image_id"])
    pool = load_pool(source, labeled=run.table, answered=answered)
    held_out = set(run.table.loc[run.split != "train", "group"])
    outside = pool["group"].isin(held_out)
    if outside.any():
        warn(f"{int(outside.sum())} pool image(s) belong to lesions in the run's validation or test split "
             f"(first: {pool['id'][outside].iloc[0]}); they are left out of the query")  # fmt: skip
        pool = pool[~outside].reset_index(drop=True)
    return pool


def query_pool(
    run: Run,
    pool: pd.DataFrame,
    budget: int,
    *,
    method: str = "hardmine",
    k: int = 10,
    positive_share: float = 0.5,
    device: str | None = None,
    callback: Callback | None = None,
    pool_source: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Pick ``budget`` pool images to label with acquisition function ``method``; writes ``RUN/query.csv``.

    The model the run hands back scores the training split and the pool in one space (the pool centred
    on the training split's mean embedding), at its validation-tuned threshold; the acquisition
    (:func:`hardmine.core.acquisition.acquire`) sees the training split's embeddings and labels, so
    ``coreset`` and ``hardmine`` can look away from what is labeled and ``seals`` around its melanomas.

    ``pool``: ``id, path, group`` (:func:`open_pool`). Returns the picks in order: ``id, path, group,
    prob_pos`` (P(positive), higher = more likely positive), ``reason``, ``neighbours`` (the ids of
    the nearest labeled training images, nearest first, ``|``-separated). ``RUN/query.json`` records
    how the query was made (``pool_source`` among it).
    """
    source, r = run.returned()
    engine = Engine(source.run_config().train, device)
    model = engine.load_model(source.verified_model_path(r))
    threshold = source.threshold(r)
    train = run.part("train")
    _, train_emb, center = engine.score(model, train, threshold=threshold, callback=callback)
    pool_scores, pool_emb, _ = engine.score(model, pool.assign(label=0), threshold=threshold, center=center,
                                            callback=callback)  # fmt: skip
    rows, reasons = acquire(method, pool_scores["prob_pos"].to_numpy(), pool_emb, budget, groups=pool["group"],
                            threshold=threshold, labeled_embeddings=train_emb, labeled_labels=train["label"],
                            k=k, positive_share=positive_share, seed=run.config.train.seed)  # fmt: skip
    picked = pool.iloc[rows][["id", "path", "group"]].reset_index(drop=True)
    picked["prob_pos"] = pool_scores["prob_pos"].to_numpy()[rows]
    picked["reason"] = reasons
    _, nearest = NeighbourIndex().build(np.ascontiguousarray(train_emb, dtype=np.float32)).search(
        np.ascontiguousarray(pool_emb[rows], dtype=np.float32), min(SHOWN_NEIGHBOURS, len(train)))
    picked["neighbours"] = ["|".join(train["id"].iloc[j] for j in row if j >= 0) for row in nearest]
    write_csv(run.query_path(), picked)
    write_json(run.query_info_path(), {"pool": None if pool_source is None else str(pool_source), "method": method,
                                       "budget": budget, "pool_size": len(pool), "round": r,
                                       "threshold": threshold, "k": k, "positive_share": positive_share})  # fmt: skip
    return picked
