"""What a mined round of a run on demo data did with the planted hard cases and label flips."""

from __future__ import annotations

import os

import pandas as pd

from hardmine.core.io import read_json
from hardmine.core.mining import MiningConfig
from hardmine.core.scores import mining_inputs
from hardmine.data.synth import planted_recovery
from hardmine.record.record import RunFolder


def round_planted_recovery(run_dir: str | os.PathLike, r: int, planted: pd.DataFrame) -> dict[str, float]:
    """:func:`planted_recovery` of round ``r`` of a run on demo data, once it is mined: its
    ``scores.csv``, ``mined.csv``, threshold, and the score source and mining options ``mining.json`` records."""
    folder = RunFolder(run_dir)
    scores = folder.scores(r)
    summary = read_json(folder.mining_path(r))
    prob, signals = mining_inputs(scores, summary["source"])
    config = folder.run_config()
    mining = MiningConfig(**summary["settings"]) if "settings" in summary else config.mining
    return planted_recovery(planted, scores["id"], scores["label"].to_numpy(), prob, folder.threshold(r),
                            folder.mined(r), mining, signals, cost_fn=config.threshold.cost_fn,
                            cost_fp=config.threshold.cost_fp)  # fmt: skip
