"""Querying the unlabeled pool: score it with the model a run hands back and pick what to label next."""

from __future__ import annotations

import pandas as pd

from hardmine.core.acquisition import acquire
from hardmine.core.io import write_csv
from hardmine.engine.inference import Callback
from hardmine.engine.runtime import Engine
from hardmine.run.opened import Run


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
) -> pd.DataFrame:
    """Pick ``budget`` pool images to label with acquisition function ``method``; writes ``RUN/query.csv``.

    The model the run hands back scores the training split and the pool in one space (the pool centred
    on the training split's mean embedding), at its validation-tuned threshold; the acquisition
    (:func:`hardmine.core.acquisition.acquire`) sees the training labels, so ``seals`` and
    ``hardmine`` can look around the labeled melanomas and the ones the model misses.

    ``pool``: ``id, path, group`` (:func:`hardmine.data.pool.load_pool`). Returns the picks in order:
    ``id, path, group, prob_pos`` (P(positive), higher = more likely positive), ``reason``.
    """
    source, r = run.returned()
    engine = Engine(source.run_config().train, device)
    model = engine.load_model(source.model_path(r))
    threshold = source.threshold(r)
    train = run.part("train")
    train_scores, train_emb, center = engine.score(model, train, threshold=threshold, callback=callback)
    pool_scores, pool_emb, _ = engine.score(model, pool.assign(label=0), threshold=threshold, center=center,
                                            callback=callback)  # fmt: skip
    rows, reasons = acquire(method, pool_scores["prob_pos"].to_numpy(), pool_emb, budget, groups=pool["group"],
                            threshold=threshold, labeled_embeddings=train_emb, labeled_labels=train["label"],
                            labeled_prob=train_scores["prob_pos"].to_numpy(), k=k, positive_share=positive_share,
                            seed=run.config.train.seed)  # fmt: skip
    picked = pool.iloc[rows][["id", "path", "group"]].reset_index(drop=True)
    picked["prob_pos"] = pool_scores["prob_pos"].to_numpy()[rows]
    picked["reason"] = reasons
    write_csv(run.query_path(), picked)
    return picked
