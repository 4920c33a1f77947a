"""Active-learning rounds: train or refit, then ask the pool which images to label next.

A human labels between calls: ``hardmine round ... --pool POOL --budget B`` runs
the rounds and ends with a query and its labeling page; ``hardmine label RUN
answers.csv`` adds the answers to the training split; the next ``round`` call
trains on them (same validation and test split) and queries again. For
benchmarks only, a simulated oracle answers from a hidden column of a pool CSV
(optionally wrong for a share of its answers), and the loop runs ``n`` queries
in one call.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from hardmine.core.acquisition import check_options
from hardmine.core.errors import DataError
from hardmine.core.io import write_csv
from hardmine.data.answers import UNSURE, read_answers
from hardmine.data.images import read_csv, require_columns
from hardmine.engine.inference import Callback
from hardmine.record.layout import ORACLE_ANSWERS_FILE
from hardmine.run.label import Labeled, apply_answers
from hardmine.run.opened import Run
from hardmine.run.query import check_budget, open_pool, query_pool
from hardmine.run.rounds import finish, run_rounds


def active_rounds(
    run: Run,
    n: int,
    pool_source: str | os.PathLike,
    budget: int,
    *,
    method: str = "hardmine",
    method_options: dict[str, Any] | None = None,
    oracle: str | None = None,
    oracle_error: float = 0.0,
    resume: bool = False,
    init_checkpoint: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> tuple[dict[str, Any], pd.DataFrame, list[Labeled]]:
    """Rounds that end with a query of the pool; returns the last report, the last query and what was labeled.

    Without ``oracle``: an active-learning step when answers joined the training split since the latest
    round, the ``n`` mining rounds of :func:`run_rounds`, then one query (``RUN/query.csv``) and its labeling page,
    for a person to answer. With ``oracle`` (a column of the pool CSV holding each
    image's class): round 0 if missing, then ``n`` times a query answered from that column
    (``oracle_error``: the share of answers flipped, fixed by the run's seed), the answers added to
    the training split, and an active-learning step trained on every answer so far (``--update``), whose
    model asks the next query. Either way the pool, the budget and the method's options are checked before
    anything trains.
    """
    check_options(method, method_options or {})
    pool = open_pool(run, pool_source)  # its images checked once, before any training
    check_budget(budget, len(pool), pool_source)
    if oracle is None:
        # answers that joined the training split since the latest round are trained on first (a step)
        report = run_rounds(run, n, resume=resume, init_checkpoint=init_checkpoint, callback=callback,
                            finish_outputs=False)  # fmt: skip
        picked = query_pool(run, pool, budget, method=method, options=method_options, callback=callback,
                            pool_source=pool_source)  # fmt: skip
        finish(run)  # after the query: report.html links its labeling page
        return report, picked, []
    truth = oracle_answers(pool_source, oracle, run, oracle_error)
    report = run_rounds(run, 0, resume=resume, init_checkpoint=init_checkpoint, callback=callback)
    labeled = []
    picked = pd.DataFrame()
    classes = run.config_dict()["classes"]
    for _ in range(n):
        asked = pool["id"].isin(set(read_answers(run.config.data.data)["image_id"]))
        left = pool[~asked].reset_index(drop=True)
        rate = float(left["id"].map(truth).isin(classes["positive"]).mean())  # the oracle knows the pool's rate
        picked = query_pool(run, left, budget, method=method, options=method_options, callback=callback,
                            pool_source=pool_source, pool_rate=rate)  # fmt: skip
        answers = pd.DataFrame({"image_id": picked["id"], "label": picked["id"].map(truth)})
        path = write_csv(run.root / ORACLE_ANSWERS_FILE, answers)
        labeled.append(apply_answers(run, path))
        report = run_rounds(run, 0, callback=callback)  # one step, trained on every answer so far
    return report, picked, labeled


def oracle_answers(pool_source: str | os.PathLike, column: str, run: Run, error: float = 0.0) -> pd.Series:
    """A simulated expert: each pool image's class from ``column`` of the pool CSV, as the run names it.

    Classes outside the run's task are answered ``unsure``; ``error`` flips the answers for that share
    of the lesions (all images of a lesion alike; the same lesions for a run's seed).
    """
    path = os.fspath(pool_source)
    if not (os.path.isfile(path) and path.lower().endswith(".csv")):
        raise DataError(f"--oracle {column}: the pool must be a CSV holding that column; got {pool_source}")
    if not 0 <= error < 0.5:
        raise DataError(f"--oracle-error {error} must be in [0, 0.5)")
    frame = read_csv(pool_source)
    require_columns(frame, (column,), pool_source)
    ids = frame["id"] if "id" in frame else frame["image_id"]
    classes = run.config_dict()["classes"]
    value = frame[column].str.strip()
    positive, negative = value.isin(classes["positive"]), value.isin(classes["negative"])
    group = frame["group"] if "group" in frame else frame.get("lesion_id", ids)
    lesion = np.unique(group.to_numpy(), return_inverse=True)[1]
    flip = (np.random.default_rng(run.config.train.seed).random(lesion.max() + 1) < error)[lesion]
    answer = np.where(positive != flip, classes["positive"][0], classes["negative"][0])
    answer = np.where(positive | negative, answer, UNSURE)
    return pd.Series(answer, index=ids.to_numpy())
