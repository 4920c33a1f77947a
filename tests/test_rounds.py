import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hardmine.cli import app
from hardmine.core.errors import HardmineError
from hardmine.core.metrics import METRIC_KEYS
from hardmine.core.mining import MiningConfig
from hardmine.record.config import DataConfig, RoundsConfig, RunConfig, TrainConfig
from hardmine.record.manifest import Manifest
from hardmine.run.opened import Run
from hardmine.run.rounds import run_rounds
from hardmine.strategies import epochs_per_round, get_strategy

runner = CliRunner()
ROUND_FILES = ("model.pt", "metrics.json", "scores.csv", "embeddings.npy", "mined.csv", "weights.csv")


def _config(data, **rounds):
    train = TrainConfig(model="tiny", image_size=24, epochs=2, batch_size=32, seed=0, device="cpu")
    rounds = {"strategy": "finetune", "round_epochs": 1} | rounds
    return RunConfig(DataConfig(data=str(data)), train, rounds=RoundsConfig(**rounds))


def _validate_report(report: dict, n_rounds: int) -> None:
    """report.json against the schema in DESIGN.md (plus test_round0)."""
    assert set(report) >= {"rounds", "best_round", "test", "test_round0", "select_by"}
    assert [row["round"] for row in report["rounds"]] == list(range(n_rounds))
    for row in report["rounds"]:
        assert set(METRIC_KEYS) <= set(row["val"])
    assert report["best_round"] in range(n_rounds)
    for key in ("test", "test_round0"):
        assert set(METRIC_KEYS) <= set(report[key])
        assert 0 <= report[key]["auroc"] <= 1


def mining_round_train_config(config: RunConfig) -> TrainConfig:
    return get_strategy(config.rounds.strategy).train_config(config)


def test_mining_rounds_fine_tune_briefly_and_do_not_oversample_twice():
    base = TrainConfig(epochs=20, lr=3e-3, sampling="oversample", freeze_epochs=2)
    tuned = mining_round_train_config(RunConfig(train=base, rounds=RoundsConfig(strategy="finetune")))
    assert (tuned.epochs, tuned.lr, tuned.freeze_epochs, tuned.sampling) == (5, 1e-3, 0, "none")
    # without class balance in the curriculum, the sampler still balances the classes
    unbalanced = mining_round_train_config(RunConfig(train=base, mining=MiningConfig(balance=False),
                                                     rounds=RoundsConfig(strategy="finetune")))
    assert unbalanced.sampling == "oversample"
    explicit = mining_round_train_config(RunConfig(train=base, rounds=RoundsConfig(strategy="finetune", round_epochs=3,
                                                                                    round_lr=5e-4)))
    assert (explicit.epochs, explicit.lr) == (3, 5e-4)
    scratch = mining_round_train_config(RunConfig(train=base, rounds=RoundsConfig(strategy="retrain")))
    assert (scratch.epochs, scratch.lr, scratch.freeze_epochs) == (20, 3e-3, 2)
    assert epochs_per_round(RoundsConfig(strategy="retrain"), 20) == 20
    assert epochs_per_round(RoundsConfig(strategy="head"), 20) == 0


def test_round_run_produces_the_contract(demo_dir, tmp_path):
    run_dir = tmp_path / "run"
    args = ["round", "--data", str(demo_dir), "--model", "tiny",
            "--out", str(run_dir), "--n", "1", "--image-size", "24", "--epochs", "2",
            "--round-epochs", "1", "--strategy", "finetune", "--device", "cpu", "--k", "5"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("config.json", "split.csv", "manifest.json", "report.json", "report.html", "split_audit.csv"):
        assert (run_dir / name).exists(), name
    for r in (0, 1):
        for name in ROUND_FILES:
            assert (run_dir / f"round-{r:03d}" / name).exists(), (r, name)
    report = json.loads((run_dir / "report.json").read_text())
    _validate_report(report, 2)
    assert report["rounds"][1]["mining"]["n_seeds"] > 0
    # val thresholds are carried to test, never re-tuned
    best = report["best_round"]
    val = json.loads((run_dir / f"round-{best:03d}" / "metrics.json").read_text())
    assert report["test_best_round"]["threshold"] == val["threshold"]
    # the equal-epochs reference: round 0's recipe for 2 + 1 epochs, handed back unless the best round beats it
    reference = report["reference"]
    assert reference["epochs"] == 3 and (run_dir / "reference" / "round-000" / "model.pt").exists()
    assert reference["test"]["threshold"] == reference["val"]["threshold"]
    assert "equal-epochs reference" in result.output
    assert "rnd" in result.output and "test split" in result.output
    # another call adds rounds
    at = args.index("--n") + 1
    result = runner.invoke(app, args[:at] + ["1"] + args[at + 1:])
    assert result.exit_code == 0, result.output
    assert len(json.loads((run_dir / "report.json").read_text())["rounds"]) == 3
    # a different configuration on the same run is refused
    result = runner.invoke(app, args[:-1] + ["7"])
    assert result.exit_code == 2 and "mining.k: 5 then, 7 now" in result.output
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0 and (run_dir / "rounds.png").exists() and (run_dir / "roc_test.png").exists()


class _Kill(Exception):
    pass


@pytest.fixture(scope="module")
def uninterrupted(demo_dir, tmp_path_factory) -> tuple[dict, Path]:
    """Two rounds run through without a kill: the report and the run folder every resume is compared with."""
    root = tmp_path_factory.mktemp("uninterrupted") / "full"
    return run_rounds(Run.create(root, _config(demo_dir)), 2), root


@pytest.mark.parametrize("kill_at", ["epoch", "mine"])
def test_resume_after_kill_equals_uninterrupted(demo_dir, tmp_path, kill_at, monkeypatch, uninterrupted):
    full, full_root = uninterrupted

    in_round_1 = []

    def killer(event, info):
        if event == "step" and info == {"round": 1, "step": "train"}:
            in_round_1.append(True)
        if kill_at == "epoch" and event == "epoch_end" and info["epoch"] == 0 and in_round_1:
            raise _Kill  # after round 1's first epoch checkpoint, before its second

    if kill_at == "mine":
        import hardmine.run.rounds as rounds

        original = rounds.mine_round

        def mine_then_die(run, r, *a, **k):
            if r == 1:
                raise _Kill
            return original(run, r, *a, **k)

        monkeypatch.setattr(rounds, "mine_round", mine_then_die)
    cut_run = Run.create(tmp_path / "cut", _config(demo_dir))
    with pytest.raises(_Kill):
        run_rounds(cut_run, 2, callback=killer)
    monkeypatch.undo()
    assert Manifest(tmp_path / "cut").target == 2
    resumed = run_rounds(Run.create(tmp_path / "cut", _config(demo_dir)), 0, resume=True)
    assert resumed["best_round"] == full["best_round"]
    for a, b in zip(full["rounds"], resumed["rounds"], strict=True):
        assert a["val"]["auroc"] == pytest.approx(b["val"]["auroc"], abs=1e-6)
        assert a["val"]["threshold"] == pytest.approx(b["val"]["threshold"], abs=1e-6)
    assert full["test"]["auroc"] == pytest.approx(resumed["test"]["auroc"], abs=1e-6)
    w_full = np.loadtxt(full_root / "round-001" / "weights.csv", delimiter=",", skiprows=1, usecols=1)
    w_cut = np.loadtxt(tmp_path / "cut" / "round-001" / "weights.csv", delimiter=",", skiprows=1, usecols=1)
    assert np.allclose(w_full, w_cut, atol=1e-6)


def test_different_config_refused_and_overwrite(demo_dir, tmp_path):
    Run.create(tmp_path / "r", _config(demo_dir))
    other = _config(demo_dir, select_by="auprc")
    with pytest.raises(HardmineError, match="different configuration \\(rounds.select_by"):
        Run.create(tmp_path / "r", other)
    Run.create(tmp_path / "r", other, overwrite=True)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(HardmineError, match="not a hardmine run directory"):
        Run.create(tmp_path / "x", other, overwrite=True)
    assert (tmp_path / "x" / "notes.txt").exists()


def test_attack_overwrite_never_deletes_a_folder_that_is_not_a_run(demo_dir, tmp_path):
    """Attack (item 3): ``round --out DIR --overwrite`` on a project folder holding ``config.json`` =
    ``{"train": {...}}`` beside ``src/`` and ``notes.md`` removed the whole folder; and a real run's files
    copied into a folder of the user's would have taken the user's files with them."""
    other = _config(demo_dir, select_by="auprc")
    looks = tmp_path / "project"
    (looks / "src").mkdir(parents=True)
    (looks / "notes.md").write_text("mine")
    (looks / "config.json").write_text(json.dumps({"train": {"epochs": 2}}))
    with pytest.raises(HardmineError, match="--overwrite replaces only a hardmine run"):
        Run.create(looks, other, overwrite=True)
    Run.create(tmp_path / "r", _config(demo_dir))
    shutil.copytree(tmp_path / "r", looks, dirs_exist_ok=True)  # a run's files beside the user's
    with pytest.raises(HardmineError, match="also holds notes.md, src/ that hardmine did not write"):
        Run.create(looks, _config(demo_dir), overwrite=True)
    assert (looks / "notes.md").read_text() == "mine" and (looks / "src").is_dir()


def test_config_continues_a_run_and_every_difference_is_listed(demo_dir, tmp_path):
    run = tmp_path / "r"
    args = ["round", "--data", str(demo_dir), "--model", "tiny",
            "--out", str(run), "--n", "0", "--epochs", "1", "--image-size", "24",
            "--device", "cpu", "--workers", "0", "--k", "5", "--strategy", "finetune", "--no-reference"]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    # every difference at once, and how to go on instead
    changed = runner.invoke(app, ["round", "--data", str(demo_dir), "--model", "tiny",
                                  "--out", str(run), "--n", "1", "--device", "cpu"])
    assert changed.exit_code == 2
    for difference in ("train.epochs: 1 then, 20 now", "train.image_size: 24 then, 64 now", "mining.k: 5 then",
                       "rounds.strategy: 'finetune' then, 'head' now", f"--config {run / 'config.json'}"):
        assert difference in changed.stderr.replace("\n", ""), changed.stderr
    # --config: the saved options, none typed again; an option given changes only itself
    result = runner.invoke(app, ["round", "--config", str(run / "config.json"), "--out", str(run), "--n", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "manifest.json").read_text())["target_round"] == 1
    other = tmp_path / "other"
    result = runner.invoke(app, ["round", "--config", str(run / "config.json"), "--out", str(other), "--n", "0",
                                 "--round-epochs", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    saved, new = (json.loads((folder / "config.json").read_text()) for folder in (run, other))
    assert new["rounds"]["round_epochs"] == 2 and new["rounds"]["strategy"] == "finetune"
    assert {k: v for k, v in new["train"].items()} == saved["train"] and new["mining"] == saved["mining"]
    missing = runner.invoke(app, ["round", "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "--data is required" in missing.stderr


def test_compare_runs_baselines_hardmine_and_the_no_mining_ablation(demo_dir, tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", "--data", str(demo_dir), "--model", "tiny",
            "--out", str(out), "--seeds", "1", "--n", "1", "--image-size", "24",
            "--epochs", "2", "--round-epochs", "1", "--strategy", "finetune", "--device", "cpu",
            "--k", "5"]  # fmt: skip
    result = runner.invoke(app, [*args, "--methods", "oversample,rounds-no-mining,hardmine"])
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "compare.csv")
    assert summary["method"].tolist() == ["oversample", "no-mining-finetune", "hardmine-finetune"]
    runs = pd.read_csv(out / "compare_runs.csv").set_index("method")
    # round 0 plus one round, the baseline for as long; the rounds' equal-epochs reference counted too
    assert runs["epochs"].to_dict() == {"oversample": 3, "no-mining-finetune": 6, "hardmine-finetune": 6}
    assert json.loads((out / "oversample" / "seed-0" / "config.json").read_text())["train"]["epochs"] == 3
    # the equal-epochs reference is the oversampling baseline's recipe: compare adopts that run, its time counted
    baseline = out / "oversample" / "seed-0"
    for method in ("no-mining-finetune", "hardmine-finetune"):
        reference = out / method / "seed-0" / "reference"
        assert (reference / "round-000" / "model.pt").read_bytes() == (baseline / "round-000" / "model.pt").read_bytes()
        trained_s = json.loads((baseline / "round-000" / "metrics.json").read_text())["train_s"]
        assert json.loads((reference / "timing.json").read_text())["wall_s"] == trained_s > 0
        returned = json.loads((out / method / "seed-0" / "report.json").read_text())["returned"]
        assert runs.loc[method, "returned_reference"] == float(returned == "reference")
    # the ablation mined nothing: class-balance weights only, nobody quarantined
    ablation = out / "no-mining-finetune" / "seed-0" / "round-000"
    weights = pd.read_csv(ablation / "weights.csv")["weight"].to_numpy()
    labels = pd.read_csv(ablation / "scores.csv")["label"].to_numpy()
    assert np.allclose(weights[labels == 1], weights[labels == 1][0])
    assert np.allclose(weights[labels == 0], weights[labels == 0][0])
    assert "quarantined" not in set(pd.read_csv(ablation / "mined.csv")["role"])
    hardmine_weights = pd.read_csv(out / "hardmine-finetune" / "seed-0" / "round-000" / "weights.csv")["weight"]
    assert hardmine_weights.nunique() > 2
    bad = runner.invoke(app, [*args, "--methods", "ce,magic"])
    assert bad.exit_code == 2 and "magic" in bad.output and "Traceback" not in bad.output


def test_trusted_labels_from_metadata_are_never_quarantined(demo_dir, tmp_path):
    def run(out, *trusted):
        args = ["round", "--data", str(demo_dir), "--model", "tiny",
                "--out", str(out), "--n", "0", "--epochs", "2", "--image-size", "24",
                "--device", "cpu", "--workers", "0", *trusted]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert json.loads((out / "config.json").read_text())["mining"]["trusted"] == rule
        mined = pd.read_csv(out / "round-000" / "mined.csv", dtype={"id": str}, keep_default_na=False)
        return result.output, mined.loc[mined["role"] == "quarantined", "id"]

    # HAM10000 data trusts histopathology by default, and says so; --trusted none doubts every label
    rule = "dx_type=histo"
    output, quarantined = run(tmp_path / "histo")
    assert "trusted labels (dx_type=histo)" in output and "--trusted none" in output
    samples = pd.read_csv(tmp_path / "histo" / "samples.csv", dtype=str).set_index("id")
    assert (samples.loc[quarantined, "dx_type"] != "histo").all()
    rule = ""
    output, doubted = run(tmp_path / "none", "--trusted", "none")
    assert "trusted labels" not in output
    assert (samples.loc[doubted, "dx_type"] == "histo").any()  # the default kept these out of the quarantine
    rule = "dx_type=" + ",".join(sorted(set(samples["dx_type"])))
    # trusting every diagnosis method leaves nothing to quarantine (a plain run quarantines some)
    assert len(run(tmp_path / "all", "--trusted", rule)[1]) == 0


def test_rounds_with_networks_triage_train_them_once(demo_dir, tmp_path):
    out = tmp_path / "oof"
    args = ["round", "--data", str(demo_dir), "--model", "tiny",
            "--out", str(out), "--n", "2", "--strategy", "head", "--epochs", "2",
            "--image-size", "24", "--device", "cpu", "--workers", "0", "--triage", "networks", "--oof", "2",
            "--oof-epochs", "1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    # the fold networks depend on the split and round 0's recipe only: later rounds reuse round 0's
    assert not (out / "round-001" / "oof").exists() and not (out / "round-002" / "oof").exists()
    for fold in (0, 1):
        assert (out / "round-000" / "oof" / f"fold-{fold}" / "history.jsonl").read_text().count("\n") == 1
    first, last = (pd.read_csv(out / f"round-00{r}" / "scores.csv") for r in (0, 2))
    assert np.allclose(first["suspicion_networks"], last["suspicion_networks"])
    assert np.allclose(first["prob_pos_oof"], last["prob_pos_oof"])
    # --triage networks: their evidence is the suspicion, the seeds still come from the round's own model
    mined = pd.read_csv(out / "round-000" / "mined.csv", dtype={"id": str}).set_index("id")
    first = first.astype({"id": str}).set_index("id")
    assert set(mined.index[mined["role"] == "quarantined"]) == set(first.index[first["suspicion"] >= 0.8])
    assert json.loads((out / "round-000" / "mining.json").read_text())["source"] == "insample"
    result = runner.invoke(app, ["score", str(out), "--triage", "nets"])
    assert result.exit_code == 2 and "nets" in result.output
    # the networks and the split audit are recorded as the score step's outputs: damage is found and redone
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert files["split_audit.csv"]["step"] == "r000:score"
    assert files["round-000/oof/fold-1/model.pt"]["step"] == "r000:score"
    assert files["round-000/oof/settings.json"]["step"] == "r000:score"
    before = pd.read_csv(out / "round-000" / "scores.csv")
    with open(out / "round-000" / "oof" / "fold-1" / "model.pt", "r+b") as fh:
        fh.truncate(100)
    result = runner.invoke(app, [*args, "--resume"], terminal_width=250)
    assert result.exit_code == 0, result.output
    assert "fold-1/model.pt is damaged" in " ".join(result.output.split())
    assert (out / "round-000" / "oof" / "fold-1" / "model.pt").stat().st_size > 100  # trained again
    after = pd.read_csv(out / "round-000" / "scores.csv")
    # the same networks again: the same probabilities (to float noise of a second training)
    assert np.allclose(after["prob_pos_oof"], before["prob_pos_oof"], atol=1e-6)


def test_round_help_shows_the_common_options_and_help_all_every_one():
    short = runner.invoke(app, ["round", "--help"], terminal_width=80)
    assert short.exit_code == 0 and len(short.output.splitlines()) <= 80, short.output
    assert "--frozen" in short.output and "The fast path on a CPU" in short.output
    assert "--trusted" in short.output and "COLUMN=VALUE" not in short.output  # by name only
    full = runner.invoke(app, ["round", "--help-all"], terminal_width=80)
    assert full.exit_code == 0 and "COLUMN=VALUE" in full.output and "--help-all shows" not in full.output
    assert len(full.output.splitlines()) > 150
