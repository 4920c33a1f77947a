"""The mining bar on demo images: the default pipeline (tiny model, default training,
in-sample scores, default mining options) finds the planted hard cases and quarantines
the planted label flips. The slowest test of the suite (one 20-epoch training)."""

import pandas as pd

from hardmine.config import DataConfig, RunConfig, TrainConfig
from hardmine.runfolder import Run
from hardmine.steps import mine_round, score_round, train_round
from hardmine.synth import generate_demo, round_planted_recovery


def test_default_pipeline_mines_planted_hard_cases_and_quarantines_flips(tmp_path):
    data = tmp_path / "data"
    generate_demo(data, n=2300, seed=1)
    config = RunConfig(DataConfig(data=str(data)), TrainConfig(seed=1, device="cpu"))
    run = Run.create(tmp_path / "run", config)
    train_round(run, 0)
    score_round(run, 0)
    mine_round(run, 0)

    found = round_planted_recovery(run.root, 0, pd.read_csv(data / "planted.csv"))

    assert found["hard_lift"] > 1.5, found  # planted hard cases are mined far above their base rate
    assert found["flips_seed_worthy"] >= 20, found
    assert found["flips_quarantined"] >= 0.8 * found["flips_seed_worthy"], found
    assert found["quarantine_precision"] > 0.2, found  # flips are ~2% of the images
