"""The module structure holds: a torch-free numpy core, one module that knows the run folder,
validation once with one error type."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardmine.core.errors import HardmineError
from hardmine.core.mining import MiningConfig
from hardmine.core.splits import grouped_folds
from hardmine.record.config import DataConfig, RoundsConfig, RunConfig, TrainConfig
from hardmine.record.record import Manifest, Run, RunFolder, Step, round_dir, round_number
from hardmine.run.steps import train_round
from hardmine.views.gallery import build_gallery

PACKAGE = Path(__file__).resolve().parents[1] / "hardmine"


def test_numpy_core_never_imports_torch():
    code = """
import sys
import numpy as np
from hardmine.core.index import normalise
from hardmine.core.mining import MiningConfig, mine
import hardmine.core.curriculum, hardmine.core.metrics, hardmine.views.gallery, hardmine.views.report, hardmine.record.record, hardmine.record.config
rng = np.random.default_rng(0)
labels = (rng.random(300) < 0.2).astype(int)
result = mine(labels, rng.random(300), normalise(rng.normal(size=(300, 8))), 0.5, MiningConfig(k=5))
assert len(result.seeds) > 0
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_layout_strings_live_in_the_run_folder_module():
    patterns = [r"""f["']round-\{""", r"r\{\w+:03d\}:", r"""["']manifest\.json["']""", r"""["']config\.json["']""",
                r"""["']split\.csv["']""", r"""["']report\.json["']""", r"""\.split\(["']-["']\)"""]  # fmt: skip
    for path in PACKAGE.glob("*.py"):
        if path.name == "runfolder.py":
            continue
        code = path.read_text()
        for pattern in patterns:
            assert not re.search(pattern, code), f"{path.name} knows the run folder layout: {pattern}"


def test_round_paths_and_manifest_steps_round_trip(tmp_path):
    assert round_dir(tmp_path, 7) == tmp_path / "round-007"
    assert round_number(tmp_path / "round-007") == 7 and round_number(tmp_path / "gallery") is None
    step = Step(12, "mine")
    assert step.key == "r012:mine" and Step.parse(step.key) == step
    with pytest.raises(HardmineError, match="manifest step 'r1:eat' is not valid"):
        Step.parse("r1:eat")
    manifest = Manifest(tmp_path)
    manifest.mark(Step(0, "train"))
    manifest.mark(Step(0, "score"))
    manifest.mark(Step(1, "train"))
    assert Manifest(tmp_path).completed_rounds() == [0, 1]
    assert Manifest(tmp_path).done(Step(0, "score")) and not Manifest(tmp_path).done(Step(1, "score"))


@pytest.mark.parametrize(
    "config,match",
    [
        (RunConfig(mining=MiningConfig(ema=2)), "ema=2 must be in"),
        (RunConfig(mining=MiningConfig(max_weight=0.5)), "max_weight=0.5 must be >= 1"),
        (RunConfig(mining=MiningConfig(index_codec="zip")), "index codec 'zip' is not valid"),
        (RunConfig(mining=MiningConfig(alpha=-100)), "alpha=-100 and beta=0.5 must be >= 0"),
        (RunConfig(train=TrainConfig(loss="hinge")), "loss='hinge' is not valid"),
        (RunConfig(rounds=RoundsConfig(select_by="f2")), "--select-by='f2' is not valid"),
        (RunConfig(data=DataConfig(split=(0.5, 0.5, 0.5))), "split fractions"),
    ],
)
def test_every_option_is_validated_before_anything_is_written(config, match, demo_dir, tmp_path):
    config.data.data = str(demo_dir)
    with pytest.raises(HardmineError, match=match):
        Run.create(tmp_path / "run", config)
    assert not (tmp_path / "run").exists()


def test_grouped_folds_keep_groups_whole_and_spread_positives():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 300, 1000)
    labels = (groups % 7 == 0).astype(int)
    folds = grouped_folds(labels, groups, [0.25] * 4, seed=3)
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1
    for f in range(4):
        assert 0.1 < labels[folds == f].mean() < 0.2 and 0.2 < (folds == f).mean() < 0.3
    with pytest.raises(HardmineError, match="summing to 1"):
        grouped_folds(labels, groups, [0.5, 0.6])


@pytest.fixture
def tiny_run(demo_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    train = TrainConfig(image_size=24, epochs=1, batch_size=32, device="cpu")
    run = Run.create(tmp_path / "run", RunConfig(DataConfig(data=str(data)), train))
    return run, data


def test_an_opened_run_reads_its_saved_table_not_the_data_source(tiny_run):
    run, data = tiny_run
    (data / "HAM10000_metadata.csv").unlink()  # the data source is gone: views still work
    opened = Run.open(run.root)
    assert list(opened.table["id"]) == list(run.table["id"])
    assert (opened.table["label"].to_numpy() == run.table["label"].to_numpy()).all()
    assert (opened.split == run.split).all()
    assert RunFolder(run.root).class_names() == {1: "mel", 0: "nv"}
    with pytest.raises(HardmineError, match="no round with metrics.json yet"):
        RunFolder(run.root).latest_round()


def test_views_refuse_a_round_without_its_threshold(tiny_run):
    run, _ = tiny_run
    train_round(run, 0)
    folder = RunFolder(run.root)
    assert folder.latest_round() == 0 and folder.best_round([0]) == 0
    assert 0 <= folder.threshold(0) <= 1.0 + 1e-9
    (folder.round_dir(0) / "metrics.json").unlink()
    with pytest.raises(HardmineError, match="metrics.json not found: evaluate round 0 on val first"):
        folder.threshold(0)
    with pytest.raises(HardmineError, match="mined.csv not found|no round with mined.csv"):
        build_gallery(run.root, 0)


def test_command_line_defaults_are_the_configuration_defaults():
    from dataclasses import fields

    from hardmine.cli.options import ALL_GROUPS

    for group in ALL_GROUPS:
        defaults = {f.name: f.default for f in fields(group.kind)}
        for name, (_, option) in group.options.items():
            field = group.renamed.get(name, name)
            if field in defaults and option.default is not ...:
                assert option.default == defaults[field], f"--{name.replace('_', '-')}: {option.default!r}"
