"""Active-learning steps in a run: which rounds are steps, which model is handed back, the learning curve.

A round is an active-learning **step** when the training split held more labels
than the round before it saw (``hardmine label`` added answers); the round loop
(:mod:`hardmine.run.rounds`) records each round's label count, and a step's
update mode, in ``manifest.json``. Everything here reads those records and the
rounds' prediction files; the test split is reported, never used to choose.
"""

from __future__ import annotations

from typing import Any

from hardmine.core.io import read_json
from hardmine.engine.inference import Callback
from hardmine.record.manifest import Manifest
from hardmine.run.opened import Run

CURVE_METRICS = ("sens_at_spec90", "auprc", "auroc")
STOP_AFTER = 2  # steps in a row level on validation that make the stopping hint


def labels_seen(run: Run, manifest: Manifest, r: int) -> int:
    """Training images round ``r`` was trained on: recorded by the loop; for a round recorded before
    the loop kept the count, its score table's rows (scored before any later answer), else the split now."""
    info = manifest.rounds.get(str(r), {})
    if "labels" in info:
        return int(info["labels"])
    if run.scores_path(r).exists():
        return len(run.scores(r))
    return int((run.split == "train").sum())


def labels_grew(run: Run, manifest: Manifest, r: int) -> bool:
    """Whether answers joined the training split after round ``r`` was trained."""
    return labels_seen(run, manifest, r) < int((run.split == "train").sum())


def step_rounds(manifest: Manifest) -> list[int]:
    """The completed rounds that are active-learning steps, in order."""
    return [r for r in manifest.completed_rounds() if manifest.rounds.get(str(r), {}).get("kind") == "step"]


def batch_facts(run: Run) -> dict[str, Any]:
    """What a step records of the query its new labels answered (``query.json``): the round whose model asked,
    the acquisition function and the pool's melanoma rate it is read against."""
    if not run.query_info_path().exists():
        return {}
    info = read_json(run.query_info_path())
    return {key: info[key] for key in ("method", "pool_rate", "pool_rate_from") if key in info} | {
        "queried_by": info.get("round")}


def hand_back(run: Run, manifest: Manifest) -> tuple[int, dict[str, Any]]:
    """The round an active-learning run hands back, and why.

    The newest step: the round trained on every label so far (when mining rounds followed it on the same
    labels, the best of those on validation), unless it is worse on validation than the best round of the
    run (by ``select_by``) beyond the paired interval over validation lesions; then that best round.
    """
    rounds = manifest.completed_rounds()
    seen = {r: labels_seen(run, manifest, r) for r in rounds}
    newest = run.best_round([r for r in rounds if seen[r] == max(seen.values())])
    best = run.best_round(rounds)
    why: dict[str, Any] = {"newest": newest, "labels": seen[newest], "best_on_val": best}
    if best == newest:
        return newest, why | {"round": newest, "reason": f"round {newest} is trained on every label "
                              f"({seen[newest]}) and the best on validation"}  # fmt: skip
    metric = run.config.rounds.select_by if run.config.rounds.select_by in CURVE_METRICS else "sens_at_spec90"
    found = run.paired_on(newest, best, (metric,))[metric]
    shown = f"{metric} {found['difference']:+.3f} [{found['low']:+.3f}, {found['high']:+.3f}]"
    why["difference"] = {"metric": metric} | found
    if found["verdict"] == "worse":
        return best, why | {"round": best, "reason": f"round {newest}, trained on every label ({seen[newest]}), is "
                            f"worse on validation than round {best} beyond its paired interval ({shown})"}  # fmt: skip
    return newest, why | {"round": newest, "reason": f"round {newest} is trained on every label "
                          f"({seen[newest]}); against round {best}, the best on validation: {shown}, "
                          f"{found['verdict']}"}  # fmt: skip


def learning_curve(run: Run, manifest: Manifest, *, callback: Callback | None = None) -> dict[str, Any]:
    """Round 0 and every active-learning step: labels so far and melanomas among them, each batch's
    melanoma share against the pool's rate, validation and test metrics with 95% intervals over lesions,
    and a stopping hint.

    Returns ``{"steps": [row...], "stop_hint": str | None, "level_steps": [...]}``; a row holds ``round,
    update, labels, positives, batch, batch_positives, batch_share, pool_rate, pool_rate_from, queried_by,
    method, val, test`` (``val``/``test``: ``{metric: {value, low, high}}``).
    """
    from hardmine.core.paired import metric_intervals
    from hardmine.run.steps import metrics_on_test

    rows: list[dict[str, Any]] = []
    for r in [0, *step_rounds(manifest)]:
        info = manifest.rounds.get(str(r), {})
        row: dict[str, Any] = {"round": r, "update": info.get("update"), "labels": labels_seen(run, manifest, r),
                               "positives": info.get("positives")}  # fmt: skip
        for key in ("pool_rate", "pool_rate_from", "queried_by", "method"):
            row[key] = info.get(key)
        if rows:
            before = rows[-1]
            row["batch"] = row["labels"] - before["labels"]
            known = row["positives"] is not None and before["positives"] is not None
            row["batch_positives"] = row["positives"] - before["positives"] if known else None
            row["batch_share"] = row["batch_positives"] / row["batch"] if known and row["batch"] > 0 else None
        metrics_on_test(run, r, callback=callback)  # writes preds_test.csv once per model
        for split in ("val", "test"):
            part = run.part(split)
            prob = run.preds(r, split).loc[part["id"], "prob_pos"].to_numpy(dtype=float)
            row[split] = metric_intervals(part["label"].to_numpy(), part["group"].to_numpy(), prob, CURVE_METRICS,
                                          seed=run.config.train.seed)  # fmt: skip
        rows.append(row)
    level = []
    for before, after in zip(rows, rows[1:], strict=False):
        found = run.paired_on(after["round"], before["round"], CURVE_METRICS)
        level.append(all(found[m]["verdict"] == "level" for m in CURVE_METRICS))
    hint = None
    if len(level) >= STOP_AFTER and all(level[-STOP_AFTER:]):
        hint = (f"the last {STOP_AFTER} steps were level on validation (sens@spec90, AUPRC and AUROC each within "
                "its paired interval of the step before): more labels picked this way may no longer pay; stop "
                "here, or try another --method")  # fmt: skip
    return {"steps": rows, "level_steps": level, "stop_hint": hint}
