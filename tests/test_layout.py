"""The module structure holds: a torch-free numpy core, one module that knows the run folder,
validation once with one error type."""

import ast
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from hardmine.core.errors import HardmineError
from hardmine.core.mining import MiningConfig
from hardmine.core.splits import grouped_folds
from hardmine.record.config import DataConfig, RoundsConfig, RunConfig, TrainConfig
from hardmine.record.layout import round_dir, round_number
from hardmine.record.manifest import Manifest, Step
from hardmine.record.record import RunFolder
from hardmine.run.opened import Run
from hardmine.run.steps import train_round
from hardmine.views.gallery import build_gallery

PACKAGE = Path(__file__).resolve().parents[1] / "hardmine"


def layout_names() -> set[str]:
    """Every file name the run layout spells (its module-level string constants with a suffix)."""
    tree = ast.parse((PACKAGE / "record" / "layout.py").read_text())
    return {node.value.value for node in tree.body if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            and re.fullmatch(r"[\w.]+\.\w+", node.value.value)}  # fmt: skip


# what looks like a file or folder name a run writes: a name with a run file's suffix, or a page's or fold's folder
LOOKS_LIKE_A_RUN_FILE = re.compile(r"(?<![\w.-])[\w-]+\.(csv|json|jsonl|pt|npy|npz|png|html|parquet)\b"
                                   r"|(?<![\w-])(thumbs|fold-\d*|oof)/")  # fmt: skip
# names of the user's side, not the run folder's: data files, the answers store, the files users download
# or pass (default names in help), templates
NOT_RUN_FILES = {"HAM10000_metadata.csv", "planted.csv", "pool.csv", "manifest.csv", "labels.csv", "answers.csv",
                 "decisions.csv", "predictions.csv", "gallery.html", "label.html", "report.html"}  # fmt: skip


def spelled_layout(path: Path, names: set[str]) -> list[str]:
    """String literals (docstrings aside) of ``path`` that spell a run file name or a round folder, or look like
    one (:data:`LOOKS_LIKE_A_RUN_FILE`) without being a name of the user's side (:data:`NOT_RUN_FILES`)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}  # fmt: skip
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words = set(re.findall(r"[\w.]+", node.value))
            found += [f"{path.name}:{node.lineno} {name}" for name in sorted(names & words)]
            found += [f"{path.name}:{node.lineno} {hit.group(0)}" for hit in LOOKS_LIKE_A_RUN_FILE.finditer(node.value)
                      if hit.group(0) not in names | NOT_RUN_FILES]  # fmt: skip
            if re.search(r"round-\d|^round-$|r\d{3}:", node.value):
                found.append(f"{path.name}:{node.lineno} {node.value!r}")
    return found


def test_the_checker_sees_a_spelled_file_name(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('"""Docstrings may say model.pt."""\nPATH = "round-001"\nx = root / "last.pt"\n'
                     'y = root / "notes.json"\nz = f"thumbs/{i}.jpg"\nw = "planted.csv"\n')
    assert spelled_layout(probe, layout_names()) == ["probe.py:2 'round-001'", "probe.py:3 last.pt",
                                                     "probe.py:4 notes.json", "probe.py:5 thumbs/"]  # fmt: skip


def test_file_names_are_spelled_in_the_run_layout_only():
    names = layout_names()
    assert {"model.pt", "last.pt", "metrics.json", "dynamics.npz", "history.jsonl", "scores.csv"} <= names
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if path != PACKAGE / "record" / "layout.py"
             for hit in spelled_layout(path, names)]  # fmt: skip
    assert not found, "\n".join(found)


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
        (RunConfig(mining=MiningConfig(max_weight=0.5)), "max_weight=0.5 must be finite and >= 1"),
        (RunConfig(mining=MiningConfig(index_codec="zip")), "index codec 'zip' is not valid"),
        (RunConfig(mining=MiningConfig(alpha=-100)), "alpha=-100 and beta=0.5 must be finite and >= 0"),
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
    train = TrainConfig(model="tiny", image_size=24, epochs=1, batch_size=32, device="cpu")
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
    """Every section built from its options' defaults (through the group's own conversion: --float16 sets
    embedding_dtype) is the configuration's default section."""
    from dataclasses import fields

    from hardmine.cli.options import ALL_GROUPS

    for group in ALL_GROUPS:
        # --data: required unless --config names a saved configuration, so it has no default to compare
        values = {name: option.default for name, (_, option) in group.options.items() if name != "data"}
        built, default = group.build(values), group.kind()
        for f in fields(group.kind):
            assert getattr(built, f.name) == getattr(default, f.name), f"{group.section}.{f.name}"
