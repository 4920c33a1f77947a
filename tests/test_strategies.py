"""Round strategies end to end, the head refit, and the paired bootstrap against hand-computed cases."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from hardmine.core.errors import HardmineError
from hardmine.core.head import fit_head
from hardmine.core.paired import auroc, average_precision, paired_difference, sens_at_spec, sensitivity
from hardmine.engine.runtime import Engine
from hardmine.record.config import DataConfig, RoundsConfig, RunConfig, TrainConfig
from hardmine.record.manifest import Manifest
from hardmine.record.record import selection_value
from hardmine.run.opened import Run
from hardmine.run.rounds import run_rounds
from hardmine.strategies import epochs_per_round


def _config(data, strategy):
    train = TrainConfig(model="tiny", image_size=24, epochs=2, batch_size=32, device="cpu", sampling="none")
    return RunConfig(DataConfig(data=str(data)), train, rounds=RoundsConfig(strategy=strategy, round_epochs=1))


def test_round_epochs_per_strategy_and_equal_budget_compare():
    from hardmine.run.compare import epoch_budget

    assert epochs_per_round(RoundsConfig(strategy="retrain"), 7) == 7
    assert epochs_per_round(RoundsConfig(strategy="retrain", round_epochs=3), 7) == 3  # JTT: short round 0
    assert epochs_per_round(RoundsConfig(strategy="finetune"), 8) == 2
    assert epochs_per_round(RoundsConfig(strategy="head", round_epochs=3), 8) == 0
    config = RunConfig(train=TrainConfig(epochs=5), rounds=RoundsConfig(round_epochs=15))
    assert epoch_budget(config, 1, ["ce", "hardmine-retrain", "no-mining-finetune"]) == 20
    with pytest.raises(HardmineError, match="head 5, retrain 20"):
        epoch_budget(config, 1, ["ce", "hardmine-head", "hardmine-retrain"])


@pytest.mark.parametrize("strategy", ["finetune", "retrain", "head"])
def test_each_strategy_runs_rounds_end_to_end(strategy, demo_dir, tmp_path):
    run = Run.create(tmp_path / strategy, _config(demo_dir, strategy))
    report = run_rounds(run, 1, finish_outputs=False)
    assert [row["round"] for row in report["rounds"]] == [0, 1]
    assert report["rounds"][1]["strategy"] == strategy
    epochs_round1 = (run.round_dir(1) / "history.jsonl").read_text().count("\n") if strategy != "head" else 0
    assert epochs_round1 == {"finetune": 1, "retrain": 1, "head": 0}[strategy]  # round_epochs=1
    reference = 3 if strategy != "head" else 0  # the equal-epochs reference: round 0's recipe for 2 + 1 epochs
    assert run.epochs_trained() == 2 + epochs_round1 + reference
    if strategy == "head":
        engine = Engine(run.config.train)
        a, b = engine.load_model(run.model_path(0)), engine.load_model(run.model_path(1))
        backbone = [k for k in a.state_dict() if not k.startswith(f"backbone.{a.head_name}.")]
        assert all(np.array_equal(a.state_dict()[k], b.state_dict()[k]) for k in backbone)  # backbone kept
        assert not np.array_equal(a.head.weight.detach(), b.head.weight.detach())  # head refitted
        assert report["rounds"][1]["val"]["head_C"] in (0.01, 0.1, 1.0)
        assert run.features_path(0, "train").exists()
    # each round's validation figures, which rank the rounds, are scikit-learn's on its saved predictions
    for r in (0, 1):
        preds = run.preds(r, "val")
        val = report["rounds"][r]["val"]
        assert val["auroc"] == pytest.approx(skm.roc_auc_score(preds["label"], preds["prob_pos"]), abs=1e-9)
        assert val["auprc"] == pytest.approx(skm.average_precision_score(preds["label"], preds["prob_pos"]), abs=1e-9)
    assert Manifest(run.root).completed_rounds() == [0, 1]


def test_head_rounds_score_without_a_second_pass_over_the_training_split(demo_dir, tmp_path, monkeypatch):
    """Round 0's scoring keeps the raw features; the head refits and the scoring of head rounds read
    them: one forward pass over the training split for the whole run."""
    import hardmine.engine.inference as inference
    import hardmine.engine.runtime as runtime

    passes = []
    predict = inference.predict

    def counted(model, ds, *a, **kw):
        passes.append(len(ds))
        return predict(model, ds, *a, **kw)

    monkeypatch.setattr(inference, "predict", counted)
    monkeypatch.setattr(runtime, "predict", counted)
    run = Run.create(tmp_path / "head", _config(demo_dir, "head"))
    run_rounds(run, 2, finish_outputs=False)
    n_train = len(run.part("train"))
    assert passes.count(n_train) == 1
    # the same scores as a forward pass of the refitted model gives
    engine = Engine(run.config.train)
    logits, _ = predict(engine.load_model(run.model_path(2)), engine.dataset(run.part("train")), device="cpu")
    scores = pd.read_csv(run.scores_path(2))
    prob = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    assert np.allclose(scores["prob_pos"], prob, atol=1e-4)


def _separable(rng, n, shift):
    labels = (rng.random(n) < 0.2).astype(int)
    x = rng.normal(size=(n, 6)) + shift * labels[:, None] * np.array([1, 0.5, 0, 0, 0, 0])
    return x * np.array([10, 1, 1, 1, 0.1, 1]) + 3, labels


def test_head_refit_is_deterministic_and_chooses_c_on_validation():
    rng = np.random.default_rng(0)
    x, y = _separable(rng, 400, 1.5)
    val_x, val_y = _separable(rng, 200, 1.5)
    objective = skm.roc_auc_score
    first = fit_head(x, y, val_x, val_y, objective)
    second = fit_head(x, y, val_x, val_y, objective)
    assert np.array_equal(first.weight, second.weight) and first.C == second.C
    assert first.scores[first.C] == max(first.scores.values())
    # the folded head equals a logistic regression on standardised features
    from sklearn.linear_model import LogisticRegression

    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    w = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    ref = LogisticRegression(C=first.C, max_iter=2000).fit(z, y, sample_weight=w / w.mean())
    assert np.allclose(first.prob_pos(x), ref.predict_proba(z)[:, 1], atol=1e-6)
    # curriculum weights move the boundary: all weight on the positives pushes every probability up
    heavy = fit_head(x, y, val_x, val_y, objective, sample_weight=np.where(y == 1, 10.0, 0.1), c_grid=[first.C])
    assert heavy.prob_pos(val_x).mean() > first.prob_pos(val_x).mean()
    with pytest.raises(HardmineError, match="both classes"):
        fit_head(x, np.zeros_like(y), val_x, val_y, objective)


def test_fast_bootstrap_metrics_equal_scikit_learn():
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.15).astype(int)
    p = np.round(np.clip(0.3 * y + rng.random(300) * 0.7, 0, 1), 2)  # ties included
    assert auroc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    assert sens_at_spec(y, p) == pytest.approx(tpr[fpr <= 0.1].max(), abs=1e-12)


def test_paired_difference_on_hand_computed_cases():
    labels = np.array([1, 0, 1, 0, 1, 0])
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    b = np.array([[1, 0, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0]], dtype=float)  # seed 0: 1/3, seed 1: 2/3 of positives
    a = np.array([[1, 0, 1, 0, 0, 0], [1, 0, 1, 0, 1, 0]], dtype=float)  # seed 0: 2/3, seed 1: 3/3
    result = paired_difference(labels, groups, a, b, sensitivity, n_boot=500)
    assert result.per_seed == pytest.approx([1 / 3, 1 / 3])
    assert result.estimate == pytest.approx(1 / 3)
    # A never decides worse than B on any positive, so no resample can give a negative difference
    assert result.low >= 0 and result.high <= 1
    same = paired_difference(labels, groups, b, b, sensitivity, n_boot=200)
    assert (same.estimate, same.low, same.high, same.verdict) == (0.0, 0.0, 0.0, "level")
    # a constant gain of one positive in every lesion draw: the interval is tight above zero
    always = np.ones_like(a) * labels
    never = np.zeros_like(a)
    clear = paired_difference(labels, groups, always, never, sensitivity, n_boot=200)
    assert (clear.estimate, clear.low, clear.high, clear.verdict) == (1.0, 1.0, 1.0, "better")
    flipped = paired_difference(labels, groups, never, always, sensitivity, n_boot=200)
    assert flipped.verdict == "worse"
    with pytest.raises(HardmineError, match="must both be"):
        paired_difference(labels, groups, a, b[:, :4], sensitivity)


def test_compare_writes_paired_intervals_subgroups_and_external(demo_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import hardmine.engine.train as train_module
    from hardmine.cli import app

    fitted = []
    fit = train_module.fit
    monkeypatch.setattr(train_module, "fit", lambda *a, **kw: fitted.append(a[4]) or fit(*a, **kw))

    out = tmp_path / "cmp"
    args = ["compare", "--data", str(demo_dir), "--model", "tiny",
            "--out", str(out), "--seeds", "2", "--n", "1", "--image-size", "24",
            "--epochs", "2", "--device", "cpu", "--strategy", "head", "--sampling", "none",
            "--methods", "ce,oversample,hardmine,rounds-no-mining", "--external", str(demo_dir),
            "--subgroup", "pigment"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = pd.read_csv(out / "compare_runs.csv")
    assert set(runs["method"]) == {"ce", "oversample", "hardmine-head", "no-mining-head"} and len(runs) == 8
    assert (runs.loc[runs["method"] == "hardmine-head", "epochs"] == 2).all()  # a head round trains no epoch
    assert (runs["wall_s"] > 0).all() and {"ext_auroc", "ext_sens_at_spec90"} <= set(runs.columns)
    paired = pd.read_csv(out / "compare_paired.csv")
    assert set(paired["dataset"]) == {"test", "external"}
    assert {"sens_at_spec90", "auprc", "auroc", "sens[pigment=pink]"} <= set(paired["metric"])
    assert set(paired["verdict"]) <= {"better", "level", "worse"} and (paired["low"] <= paired["high"]).all()
    assert (out / "compare_paired.png").stat().st_size > 1000
    summary = pd.read_csv(out / "compare.csv")
    assert {"test_sens[pigment=pigmented]", "external_sens[pigment=pink]"} <= set(summary.columns)
    best = paired["baseline"].iloc[0]
    ablation = paired[(paired["method"] == "hardmine-head") & (paired["baseline"] == "no-mining-head")]
    assert set(ablation["dataset"]) == {"test", "external"} and "sens[pigment=pink]" in set(ablation["metric"])
    val = {m: np.mean([json.loads((out / m / f"seed-{s}" / "round-000" / "metrics.json").read_text())["sens_at_spec90"]
                       for s in (0, 1)]) for m in ("ce", "oversample")}  # fmt: skip
    assert best == max(val, key=val.get)  # chosen on validation, never on test
    # round 0 of both head methods is the ce baseline's recipe (--sampling none): trained once, not 3 times
    assert sorted(Path(d).parent.parent.name for d in fitted) == ["ce", "ce", "oversample", "oversample"]
    for method in ("hardmine-head", "no-mining-head"):
        shared = out / method / "seed-1" / "round-000" / "model.pt"
        assert shared.read_bytes() == (out / "ce" / "seed-1" / "round-000" / "model.pt").read_bytes()


# ---------------------------------------------------------------- the equal-epochs reference


def test_budget_reference_is_round_0s_recipe_for_the_whole_budget(demo_dir, tmp_path):
    from hardmine.core.io import write_json
    from hardmine.run.predict import predict_images
    from hardmine.run.rounds import write_report
    from hardmine.views.report import verdict_sentence

    run = Run.create(tmp_path / "run", _config(demo_dir, "finetune"))
    report = run_rounds(run, 1, finish_outputs=False)
    reference = run.reference()
    assert reference is not None and report["reference"]["epochs"] == 3  # round 0 (2) + one round (1)
    assert (reference.round_dir(0) / "history.jsonl").read_text().count("\n") == 3
    assert run.epochs_trained() == 6  # the guard's cost is counted
    # the reference is exactly round 0's recipe trained for 3 epochs: a plain run of 3 epochs equals it
    plain_config = _config(demo_dir, "finetune")
    plain = Run.create(tmp_path / "plain", RunConfig(plain_config.data, TrainConfig(**{
        **plain_config.train.__dict__, "epochs": 3})))  # fmt: skip
    run_rounds(plain, 0, finish_outputs=False)
    engine = Engine(run.config.train)
    a, b = engine.load_model(reference.model_path(0)), engine.load_model(plain.model_path(0))
    assert all(np.array_equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())

    # the returned model is never worse on validation than the reference; a tie returns the reference
    cfg = run.config
    best = report["best_round"]
    best_value = selection_value(run.val_metrics(best), cfg.rounds.select_by, cfg.threshold)
    ref_metrics = reference.val_metrics(0)
    cases = ((best_value + 0.1, "reference"), (best_value, "reference"), (best_value - 0.1, "round"))
    for ref_value, returned in cases:
        write_json(reference.round_dir(0) / "metrics.json", ref_metrics | {cfg.rounds.select_by: ref_value})
        Manifest(reference.root).refresh([reference.round_dir(0) / "metrics.json"])  # as `evaluate` does
        report = write_report(run)
        assert report["returned"] == returned
        source, r = run.returned()
        assert (source.root, r) == ((reference.root, 0) if returned == "reference" else (run.root, best))
        expected = report["reference"]["test"] if returned == "reference" else report["test_best_round"]
        assert report["test"] == expected
    write_json(reference.round_dir(0) / "metrics.json", ref_metrics | {cfg.rounds.select_by: best_value + 0.1})
    Manifest(reference.root).refresh([reference.round_dir(0) / "metrics.json"])
    report = write_report(run)
    assert "hands back the reference" in verdict_sentence(report) and report["test_difference"] == {}
    paths = list(run.part("test")["path"][:3])
    assert (predict_images(run, paths)["round"] == "reference").all()
    assert (predict_images(run, paths, 0)["round"] == 0).all()

    # one more round raises the budget: the reference is retrained for 4 epochs, the old one replaced
    report = run_rounds(run, 1, finish_outputs=False)
    assert report["reference"]["epochs"] == 4
    assert (run.reference().round_dir(0) / "history.jsonl").read_text().count("\n") == 4


def test_no_reference_when_round_0_is_its_own(demo_dir, tmp_path):
    head = Run.create(tmp_path / "head", _config(demo_dir, "head"))
    report = run_rounds(head, 1, finish_outputs=False)  # head refits train no epochs: same budget as round 0
    assert "reference" not in report and report["returned"] == "round"
    assert not (head.root / "reference").exists() and head.epochs_trained() == 2  # nothing trained beyond round 0
    from hardmine.run.predict import predict_images

    with pytest.raises(HardmineError, match="no equal-epochs reference"):
        predict_images(head, list(head.part("test")["path"][:2]), "reference")
    config = _config(demo_dir, "finetune")
    off = Run.create(tmp_path / "off", RunConfig(config.data, config.train, rounds=RoundsConfig(
        strategy="finetune", round_epochs=1, reference=False)))  # fmt: skip
    report = run_rounds(off, 1, finish_outputs=False)
    assert "reference" not in report and not (off.root / "reference").exists()
    # the option was --budget-guard: an older run's config.json keeps its value under the new name
    saved = off.config.to_dict()
    saved["rounds"]["budget_guard"] = saved["rounds"].pop("reference")
    assert RunConfig.from_dict(saved).rounds.reference is False


def test_a_toy_strategy_is_one_file_and_one_registry_line(demo_dir, tmp_path, monkeypatch):
    from toy_strategy import Polish

    from hardmine.run.compare import epoch_budget, resolve_methods
    from hardmine.strategies import STRATEGIES, check_rounds
    from hardmine.views.report import round_rows

    with pytest.raises(HardmineError, match="--strategy 'polish' is not valid; expected one of finetune"):
        check_rounds(RoundsConfig(strategy="polish"))
    with pytest.raises(HardmineError, match="--strategy 'polish' is not valid"):  # before anything is written
        Run.create(tmp_path / "early", _config(demo_dir, "polish"))
    assert not (tmp_path / "early").exists()
    monkeypatch.setitem(STRATEGIES, "polish", Polish)  # the registry line
    config = _config(demo_dir, "polish")
    config.validate()
    assert epoch_budget(config, 2, resolve_methods(["hardmine", "rounds-no-mining", "ce"], "polish")) == 4
    run = Run.create(tmp_path / "run", config)
    report = run_rounds(run, 1, finish_outputs=False)
    assert report["rounds"][1]["strategy"] == "polish" and report["rounds"][1]["init_round"] == 0
    assert (run.round_dir(1) / "history.jsonl").read_text().count("\n") == 1
    assert Polish().train_config(config).lr == config.train.lr / 10
    assert report["reference"]["epochs"] == 3  # the equal-epochs reference follows the toy's epoch budget: 2 + 1
    assert [row["init"] for row in round_rows(report)[:2]] == ["-", "r0"]
