"""The report's verdict: best round minus round 0 on test, with an interval and a plain sentence."""

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from hardmine.record.record import RunFolder
from hardmine.views.report import difference_from_round0, verdict_sentence


def _fake_run(root, prob_round0, prob_best, labels):
    ids = [f"img{i}" for i in range(len(labels))]
    pd.DataFrame({"id": ids, "group": [f"L{i // 2}" for i in range(len(labels))]}).to_csv(root / "samples.csv",
                                                                                         index=False)  # fmt: skip
    for r, prob in ((0, prob_round0), (3, prob_best)):
        (root / f"round-{r:03d}").mkdir()
        pd.DataFrame({"id": ids, "label": labels, "prob_pos": prob}).to_csv(root / f"round-{r:03d}" / "preds_test.csv",
                                                                            index=False)  # fmt: skip
    return RunFolder(root)


def test_difference_is_best_minus_round0_with_an_interval(tmp_path):
    rng = np.random.default_rng(0)
    labels = (rng.random(400) < 0.2).astype(int)
    round0 = np.clip(0.3 * labels + rng.normal(0.4, 0.25, 400), 0, 1)
    best = np.clip(0.6 * labels + rng.normal(0.3, 0.2, 400), 0, 1)
    diff = difference_from_round0(_fake_run(tmp_path, round0, best, labels), 3, n_boot=300)
    expected = roc_auc_score(labels, best) - roc_auc_score(labels, round0)
    assert abs(diff["auroc"]["difference"] - expected) < 1e-9
    assert diff["auroc"]["low"] <= expected <= diff["auroc"]["high"] and diff["auroc"]["verdict"] == "better"
    report = {"best_round": 3, "select_by": "auroc", "test_difference": diff}
    assert verdict_sentence(report).startswith("Round 3 (best on validation) against round 0 on test: sens_at_spec90")
    assert verdict_sentence(report).endswith("better than round 0 on test.")


def test_verdict_says_plainly_when_mining_did_not_help():
    assert "mining did not help" in verdict_sentence({"best_round": 0, "select_by": "auprc", "test_difference": {}})
    level = {m: {"difference": 0.01, "low": -0.05, "high": 0.06, "verdict": "level"} for m in ("auroc", "auprc")}
    sentence = verdict_sentence({"best_round": 2, "select_by": "auprc", "test_difference": level})
    assert "mining did not measurably help on test" in sentence and "auroc +0.010 [-0.050, +0.060]" in sentence
    worse = {"auroc": {"difference": -0.1, "low": -0.2, "high": -0.01, "verdict": "worse"}}
    assert "mining hurt here" in verdict_sentence({"best_round": 1, "select_by": "auroc", "test_difference": worse})


def test_verdict_and_test_columns_name_the_budget_reference():
    from hardmine.views.report import columns_on_test

    rounds = [{"round": 0, "val": {"auprc": 0.4}}, {"round": 1, "val": {"auprc": 0.5}}]
    reference = {"epochs": 30, "val": {"auprc": 0.55}, "test": {"auprc": 0.52}}
    report = {"best_round": 1, "select_by": "auprc", "rounds": rounds, "reference": reference,
              "returned": "reference", "test": reference["test"], "test_best_round": {"auprc": 0.45},
              "test_round0": {"auprc": 0.41}, "test_difference": {}}  # fmt: skip
    sentence = verdict_sentence(report)
    assert sentence.startswith("No round beat the equal-epochs reference (round 0's recipe trained for all 30 epochs)")
    assert "round 1 0.5000, reference 0.5500" in sentence and "hands back the reference" in sentence
    assert columns_on_test(report) == {"round 0": {"auprc": 0.41}, "best (round 1)": {"auprc": 0.45},
                                    "reference (30 epochs) (returned)": {"auprc": 0.52}}  # fmt: skip
    report |= {"returned": "round", "test": {"auprc": 0.45}}
    sentence = verdict_sentence(report)
    assert sentence.startswith("Round 1 beat the equal-epochs reference (30 epochs) on validation and is handed back.")
    assert list(columns_on_test(report)) == ["round 0", "best (round 1) (returned)", "reference (30 epochs)"]


def _rounds_on_validation(root, vals: list[dict], probs: list[np.ndarray], labels: np.ndarray) -> RunFolder:
    """A run folder holding only what choosing a round reads: the config, the samples, and per round its
    validation metrics and predictions."""
    import json

    from hardmine.record.config import RunConfig

    ids = [f"v{i}" for i in range(len(labels))]
    (root / "config.json").write_text(json.dumps(RunConfig().to_dict()))
    pd.DataFrame({"id": ids, "path": "x.png", "label": labels, "group": [f"L{i // 2}" for i in range(len(ids))],
                  "class_name": "nv"}).to_csv(root / "samples.csv", index=False)  # fmt: skip
    for r, (val, prob) in enumerate(zip(vals, probs, strict=True)):
        (root / f"round-{r:03d}").mkdir()
        (root / f"round-{r:03d}" / "metrics.json").write_text(json.dumps(val))
        pd.DataFrame({"id": ids, "label": labels, "prob_pos": prob}).to_csv(root / f"round-{r:03d}" / "preds_val.csv",
                                                                            index=False)  # fmt: skip
    return RunFolder(root)


def test_a_tie_on_the_selection_metric_goes_to_auprc_then_auroc_then_the_earlier_round(tmp_path):
    labels = np.array([1] * 10 + [0] * 90)
    prob = np.linspace(1, 0, 100)
    vals = [{"sens_at_spec90": 0.5, "auprc": 0.40, "auroc": 0.80},
            {"sens_at_spec90": 0.6, "auprc": 0.45, "auroc": 0.86},  # AUROC alone broke the tie before
            {"sens_at_spec90": 0.6, "auprc": 0.50, "auroc": 0.84},  # AUPRC first now
            {"sens_at_spec90": 0.6, "auprc": 0.50, "auroc": 0.84}]  # level with round 2: the earlier wins
    folder = _rounds_on_validation(tmp_path, vals, [prob] * 4, labels)
    assert folder.best_round([0, 1, 2, 3]) == 2
    assert folder.best_round([0, 1]) == 1


def test_a_round_worse_on_auprc_and_auroc_is_not_handed_back_for_a_level_operating_point(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([1] * 12 + [0] * 108)
    base = np.clip(labels * 0.1 + rng.uniform(0, 0.9, 120), 0, 1)
    vals = [{"sens_at_spec90": 0.50, "auprc": 0.46, "auroc": 0.82},
            {"sens_at_spec90": 0.58, "auprc": 0.40, "auroc": 0.81}]  # the scene of the new-user run
    (tmp_path / "level").mkdir()
    level = _rounds_on_validation(tmp_path / "level", vals, [base, base + rng.normal(0, 0.01, 120)], labels)
    assert level.best_round([0, 1]) == 0  # sens@spec90 level within its interval: round 0 stays
    better = labels * 0.6 + rng.uniform(0, 0.5, 120)  # separates the classes far better: beyond the interval
    (tmp_path / "better").mkdir()
    clear = _rounds_on_validation(tmp_path / "better", vals, [base, better], labels)
    assert clear.best_round([0, 1]) == 1


def test_the_verdict_names_the_operating_point_against_round_0():
    def at(tp, fn, fp, tn):
        return {"tp": tp, "fn": fn, "fp": fp, "tn": tn, "sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp)}

    report = {"best_round": 2, "select_by": "sens_at_spec90", "rounds": [{}, {}, {}], "test_difference": {},
              "test": at(15, 5, 58, 242), "test_round0": at(14, 6, 38, 262)}  # the new user's run: 20 alarms for 1
    text = " ".join(verdict_sentence(report).split())
    assert "sensitivity 0.75 and specificity 0.81 (15 of 20 positives caught, 58 false alarms)" in text
    assert "round 0: 0.70 and 0.87 (14 caught, 38 false alarms): 20.0 more false alarms per extra positive" in text
    fewer = report | {"test": at(13, 7, 30, 270)}
    assert "1 more positive(s) missed, -8 false alarms" in verdict_sentence(fewer)
