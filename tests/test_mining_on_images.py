"""The mining bar on demo images: the default pipeline (tiny model, default training,
in-sample scores, default mining options with label-suspicion triage) quarantines the
planted label flips and upweights none of them. The slowest test of the suite (one
20-epoch training)."""

import pandas as pd

from hardmine.data.synth import generate_demo
from hardmine.record.config import DataConfig, RunConfig, TrainConfig
from hardmine.run.opened import Run
from hardmine.run.steps import mine_round, score_round, train_round
from hardmine.views.planted import round_planted_recovery


def test_default_pipeline_mines_planted_hard_cases_and_quarantines_flips(tmp_path):
    data = tmp_path / "data"
    generate_demo(data, n=2300, seed=1)
    config = RunConfig(DataConfig(data=str(data)), TrainConfig(model="tiny", seed=1, device="cpu"))
    run = Run.create(tmp_path / "run", config)
    train_round(run, 0)
    score_round(run, 0)
    mine_round(run, 0)

    found = round_planted_recovery(run.root, 0, pd.read_csv(data / "planted.csv"))

    # measured on this setting: 25 of 26 flips quarantined, none upweighted, 152-154 quarantined. The planted
    # hard cases' lift is not asserted here: from one 20-epoch tiny model it is noise (0.78-2.25 across data
    # seeds in benchmarks/RESULTS.md; 1.48 here once, 0.99 with the packages of 2026-11-30 on the same code);
    # test_mining asserts it on a model's-eye world, bench_triage.py measures it across seeds.
    assert found["flips"] >= 20, found
    assert found["flips_quarantined"] >= 0.8 * found["flips"], found  # of all flipped labels
    assert found["flips_upweighted"] <= 0.05 * found["flips"], found  # never amplify a label error
    assert found["quarantine_precision"] > 0.12, found  # flips are ~1.6% of the training images
