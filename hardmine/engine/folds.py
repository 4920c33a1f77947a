"""Networks trained out of fold: each training image scored by a network that never saw it.

The ``oof`` score source and the ``--triage networks`` evidence read these logits
(:func:`out_of_fold_logits`); the networks live in a round's ``oof/fold-K`` fit folders
and are reused while what they were trained with (``oof/settings.json``) is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from hardmine.core.errors import HardmineError
from hardmine.core.io import read_json, write_json
from hardmine.core.splits import grouped_folds
from hardmine.engine import distributed
from hardmine.engine.runtime import Engine
from hardmine.engine.train import fit
from hardmine.record.config import RUNTIME_ONLY
from hardmine.record.layout import CHECKPOINT_FILE, FOLD_SETTINGS_FILE, fold_dir


def _claim_fold_dir(work_dir: Path, settings: dict) -> None:
    """Clear ``work_dir`` when its fold networks were trained with other settings, then record these."""
    record = work_dir / FOLD_SETTINGS_FILE
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
    if k < 2:
        raise HardmineError(f"out-of-fold scoring needs k >= 2 folds; got {k}")
    table = table.reset_index(drop=True)
    n_groups_pos = table.loc[table["label"] == 1, "group"].nunique()
    if n_groups_pos < k:
        raise HardmineError(f"only {n_groups_pos} positive groups for {k} folds; use a smaller --oof")
    fold_of = grouped_folds(table["label"].to_numpy(), table["group"].to_numpy(), [1 / k] * k, seed)
    # what changes nothing about the results (device, workers, precision, threads) does not retrain the networks
    recipe = {key: value for key, value in asdict(config).items() if key not in RUNTIME_ONLY}
    settings = {"train": recipe, "folds": k, "seed": seed,
                "ids": hashlib.sha256("\n".join(map(str, table["id"])).encode()).hexdigest()}
    distributed.on_main(lambda: _claim_fold_dir(Path(work_dir), settings))  # every rank waits for rank 0's claim
    logits = np.zeros((len(table), 2), dtype=np.float32)
    engine = Engine(config)
    for fold in range(k):
        fit_idx, held_idx = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
        out = fold_dir(work_dir, fold)
        held_ds = engine.dataset(table.iloc[held_idx])
        model = engine.build_model(seed_offset=fold)
        if callback:
            callback("fold_start", {"fold": fold, "folds": k})
        fit(model, engine.dataset(table.iloc[fit_idx], train=True), held_ds, config, out, callback=callback)
        logits[held_idx] = engine.predict(engine.load_model(out / CHECKPOINT_FILE), held_ds)[0]
    return logits
