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
    assert sentence.startswith("No round beat the budget reference (round 0's recipe trained for all 30 epochs)")
    assert "round 1 0.5000, reference 0.5500" in sentence and "hands back the reference" in sentence
    assert columns_on_test(report) == {"round 0": {"auprc": 0.41}, "best (round 1)": {"auprc": 0.45},
                                    "reference (30 epochs) (returned)": {"auprc": 0.52}}  # fmt: skip
    report |= {"returned": "round", "test": {"auprc": 0.45}}
    sentence = verdict_sentence(report)
    assert sentence.startswith("Round 1 beat the budget reference (30 epochs) on validation and is handed back.")
    assert list(columns_on_test(report)) == ["round 0", "best (round 1) (returned)", "reference (30 epochs)"]
