"""Defects found reviewing the structure, each pinned by a test that failed before its mend."""

import ast
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomllib
from PIL import Image
from typer.testing import CliRunner

from hardmine import HardMiner
from hardmine.cli import app
from hardmine.core.errors import HardmineError
from hardmine.core.metrics import choose_threshold
from hardmine.core.mining import MiningConfig, mine, triage

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_a_one_class_validation_split_is_one_line_before_any_training(tmp_path):
    # one melanoma lesion of four images: the grouped split puts it in train, validation holds nevi only
    rows = []
    for i in range(44):
        label, group = ("mel", "L-mel") if i < 4 else ("nv", f"L{i}")
        path = tmp_path / "data" / f"img{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (16, 16), (40 + i, 60, 90)).save(path)
        rows.append({"path": path.name, "label": label, "group": group})
    pd.DataFrame(rows).to_csv(tmp_path / "data" / "manifest.csv", index=False)
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "data"), "--model", "tiny",
                                 "--out", str(tmp_path / "run"),
                                 "--epochs", "1", "--image-size", "16", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "leaves val with 0 positive and" in lines[0] and "train and val need both" in lines[0]
    assert not (tmp_path / "run").exists()  # refused before the run folder is made
    with pytest.raises(HardmineError, match="only one class"):
        choose_threshold(np.zeros(5), np.linspace(0, 1, 5))


def test_costs_live_in_one_place_and_rank_the_missed_positives():
    assert not {"cost_fn", "cost_fp"} & {f.name for f in fields(MiningConfig)}
    # a missed positive (less hard) against a misclassified negative (harder): the cost ratio decides who leads
    labels = np.array([1, 0] + [0] * 18 + [1] * 20)
    prob = np.array([0.3, 0.8] + [0.05] * 18 + [0.95] * 20)
    emb = np.eye(40)
    first = {ratio: mine(labels, prob, emb, threshold=0.5, config=MiningConfig(quarantine="none", k=3), cost_fn=ratio,
                         cost_fp=1.0).seeds[0] for ratio in (1.0, 10.0)}  # fmt: skip
    assert first == {1.0: 1, 10.0: 0}
    with pytest.raises(HardmineError, match="costs must be positive"):
        mine(labels, prob, emb, threshold=0.5, config=MiningConfig(k=3), cost_fn=0)


def test_triage_by_probabilities_refuses_suspicion():
    with pytest.raises(HardmineError, match="quarantine 'suspicion' reads label-suspicion evidence"):
        triage(np.array([0, 1, 0]), np.array([0.2, 0.7, 0.9]), "suspicion")


def test_hard_miner_copies_its_config_balances_as_asked_and_refuses_idle_options(planted_world):
    labels, prob, emb, groups, _, _ = planted_world(n=300)
    config = MiningConfig(k=7)
    miner = HardMiner(labels, config=config, k=5, balance=False)
    assert config.k == 7 and miner.config.k == 5  # the caller's object is untouched
    assert np.allclose(miner.weights, 1.0)  # balance=False: uniform from the start
    assert not np.allclose(HardMiner(labels).weights, 1.0)  # the default balances the classes
    with pytest.raises(HardmineError, match="triage_probs is read by quarantine 'confident' or 'both'"):
        miner.update(prob, emb, triage_probs=prob)
    confident = HardMiner(labels, quarantine="confident")
    with pytest.warns(UserWarning, match="quarantined as suspected label errors"):
        result = confident.update(prob, emb, triage_probs=np.where(labels == 1, 0.01, 0.99))
    assert result.quarantined.all()  # they are read: every label looks wrong to these probabilities


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party modules each hardmine module imports (lazily or not)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "hardmine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top != "hardmine" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


def test_every_imported_package_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {dep.split(">")[0].split("=")[0].split("[")[0].strip().lower() for dep in project["dependencies"]}
    extras = {dep.split(">")[0].split("=")[0].strip().lower() for deps in project["optional-dependencies"].values()
              for dep in deps}  # fmt: skip
    distribution = {"sklearn": "scikit-learn", "faiss": "faiss-cpu", "PIL": "pillow"}
    imported = _third_party_imports()
    assert {"jinja2", "markupsafe"} <= set(imported)
    missing = {name: sorted(where) for name, where in imported.items()
               if distribution.get(name, name).lower() not in declared | extras}  # fmt: skip
    assert not missing, missing
    # an extra is imported only where it is optional: integrations, the timm models and the parquet writer
    optional = {name: where for name, where in imported.items() if distribution.get(name, name).lower() in
                extras - declared}  # fmt: skip
    assert all(p.startswith(("hardmine/integrations/", "hardmine/engine/models.py", "hardmine/core/io.py"))
               for where in optional.values() for p in where), optional
