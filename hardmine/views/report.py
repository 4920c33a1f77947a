"""The run report: per-round rows, PNG plots and a self-contained ``report.html``.

Reads the files a run wrote (``report.json``, ``preds_*.csv``); no torch.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from hardmine.core.io import write_bytes
from hardmine.record.layout import (
    CONFIG_FILE,
    GALLERY_DIR,
    GALLERY_PAGE,
    LEARNING_CURVE_PNG,
    MINED_FILE,
    REPORT_HTML,
    ROUNDS_PNG,
    scores_png,
)
from hardmine.record.record import RunFolder
from hardmine.strategies import get_strategy, get_update

if TYPE_CHECKING:
    from hardmine.views.pages import PageOptions

COMPARED = ("sens_at_spec90", "auprc", "auroc")

ROUND_COLUMNS = ("round", "auroc", "auprc", "sens_at_spec90", "sensitivity", "specificity", "threshold",
                 "seeds", "neighbours", "quarantined", "eff_class_ratio", "init", "worse")  # fmt: skip


def round_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per round: validation metrics and the mining that fed the round."""
    rows = []
    for row in report["rounds"]:
        val, mining = row["val"], row.get("mining") or {}
        rows.append(
            {
                "round": row["round"],
                **{
                    k: val.get(k)
                    for k in ("auroc", "auprc", "sens_at_spec90", "sensitivity", "specificity", "threshold")
                },
                "seeds": mining.get("n_seeds"),
                "neighbours": mining.get("n_neighbours"),
                "quarantined": mining.get("n_quarantined"),
                "eff_class_ratio": mining.get("effective_class_ratio"),
                "init": _init_text(row),
                "worse": row.get("worse", False),
            }
        )
    return rows


def difference_from_round0(folder: RunFolder, best: int, n_boot: int = 1000) -> dict[str, dict[str, Any]]:
    """Best round minus round 0 on the test split, per metric of ``COMPARED``, with a 95% bootstrap
    over test lesions: ``{metric: {difference, low, high, verdict}}`` (empty when a prediction file is missing)."""
    from hardmine.core.paired import paired_differences

    if not all(folder.preds_path(r, "test").exists() for r in (best, 0)):
        return {}
    best_preds, first = (folder.preds(r, "test") for r in (best, 0))  # a damaged file: one line naming it
    groups = folder.samples().set_index("id").loc[first.index, "group"].to_numpy()
    found = paired_differences(first["label"].to_numpy(), groups, best_preds.loc[first.index, "prob_pos"],
                               first["prob_pos"], COMPARED, n_boot=n_boot)  # fmt: skip
    return {metric: {k: v[k] for k in ("difference", "low", "high", "verdict")} for metric, v in found.items()}


class EvaluatedModel(NamedTuple):
    """A model a report has test metrics of: round ``round`` of the run, or of its equal-epochs reference."""

    name: str
    in_reference: bool
    round: int
    metrics: dict[str, Any]
    returned: bool


def evaluated_models(report: dict[str, Any]) -> list[EvaluatedModel]:
    """Round 0, the best round (when not round 0) and the equal-epochs reference (when trained), in that order."""
    best, reference = report["best_round"], report.get("reference")
    returned = report.get("returned", "round")
    models = [EvaluatedModel("round 0", False, 0, report["test_round0"], best == 0 and returned == "round")]
    if best != 0:
        models.append(EvaluatedModel(f"best (round {best})", False, best, report.get("test_best_round", report["test"]),
                                  returned == "round"))  # fmt: skip
    if reference:
        models.append(EvaluatedModel(f"reference ({reference['epochs']} epochs)", True, 0, reference["test"],
                                  returned == "reference"))  # fmt: skip
    return models


def columns_on_test(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Test metrics by column name, one column per :func:`evaluated_models`; the one handed back is marked."""
    return {m.name + (" (returned)" if m.returned else ""): m.metrics for m in evaluated_models(report)}


def verdict_sentence(report: dict[str, Any]) -> str:
    """Plain sentences on what mining (or the labels) bought on test, then the operating point of the model
    handed back against round 0's (from ``report.json``)."""
    point = operating_point(report)
    return _verdict(report) + (f" {point}" if point else "")


def operating_point(report: dict[str, Any]) -> str:
    """The returned model at its validation-tuned threshold on test against round 0 at its own: sensitivity,
    specificity, melanomas caught and false alarms, and what each extra melanoma caught cost in false alarms."""
    test, base = report.get("test") or {}, report.get("test_round0") or {}
    if not all(key in test for key in ("tp", "fp", "fn", "sensitivity", "specificity")):
        return ""
    text = (f"At its threshold on test the model handed back has sensitivity {test['sensitivity']:.2f} and specificity "
            f"{test['specificity']:.2f} ({test['tp']} of {test['tp'] + test['fn']} positives caught, {test['fp']} "
            "false alarms)")  # fmt: skip
    if not all(key in base for key in ("tp", "fp")) or (base["tp"], base["fp"]) == (test["tp"], test["fp"]):
        return text + "."
    caught, alarms = test["tp"] - base["tp"], test["fp"] - base["fp"]
    if caught > 0:
        trade = (f"{alarms / caught:.1f} more false alarms per extra positive caught" if alarms > 0 else
                 f"{caught} more positive(s) caught with {-alarms} fewer false alarms")  # fmt: skip
    elif caught < 0:
        trade = f"{-caught} more positive(s) missed, {alarms:+d} false alarms"
    else:
        trade = f"the same positives caught, {alarms:+d} false alarms"
    return (f"{text}; round 0: {base['sensitivity']:.2f} and {base['specificity']:.2f} ({base['tp']} caught, "
            f"{base['fp']} false alarms): {trade}.")


def _verdict(report: dict[str, Any]) -> str:
    best, select_by = report["best_round"], report["select_by"]
    if report.get("handed_back"):  # active learning: what the labels bought, not what mining did
        diff = report.get("test_difference") or {}
        if not diff:
            return f"The run hands back round {best}: {report['handed_back']['reason']}."
        parts = ", ".join(f"{m} {d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" for m, d in diff.items())
        return (f"The run hands back round {best}: {report['handed_back']['reason']}. Against round 0 on test: "
                f"{parts}; {_outcome({d['verdict'] for d in diff.values()}, 'the labels')}.")  # fmt: skip
    reference = report.get("reference")
    if reference and report.get("returned") == "reference":
        best_val = next(row["val"] for row in report["rounds"] if row["round"] == best)
        values = ""
        if select_by in best_val:
            values = f": round {best} {_fmt(best_val[select_by])}, reference {_fmt(reference['val'][select_by])}"
        return (f"No round beat the equal-epochs reference (round 0's recipe trained for all {reference['epochs']} "
                f"epochs) on validation ({select_by}{values}), so the run hands back the reference: mining did "
                "not help here.")  # fmt: skip
    if reference:
        return (f"Round {best} beat the equal-epochs reference ({reference['epochs']} epochs) on validation and is "
                f"handed back. " + _verdict({k: v for k, v in report.items() if k != "reference"}))
    if len(report.get("rounds", ())) == 1:  # e.g. the first call of an active-learning loop: nothing was mined
        return "Round 0 is the only round (no mining round or active-learning step was asked); it is handed back."
    if best == 0:
        return (f"No mining round beat round 0 on validation ({select_by}), so the run hands back round 0: "
                "mining did not help here.")  # fmt: skip
    diff = report.get("test_difference") or {}
    if not diff:
        return f"Round {best} was best on validation ({select_by})."
    parts = ", ".join(f"{m} {d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" for m, d in diff.items())
    outcome = _outcome({d["verdict"] for d in diff.values()}, "mining")
    return f"Round {best} (best on validation) against round 0 on test: {parts}; {outcome}."


CURVE_SHORT = {"sens_at_spec90": "se@sp90", "auprc": "AUPRC", "auroc": "AUROC"}


def _page_links(folder: RunFolder) -> list[tuple[str, str]]:
    """The run's other pages, as (text, path relative to the run): the galleries (round 0's, the last mined
    round's, any other built, and the one whose mining made the returned model, first) and the labeling page."""
    from hardmine.views.gallery import mining_story

    made, story = mining_story(folder)
    built = folder.rounds_with(f"{GALLERY_DIR}/{GALLERY_PAGE}")
    rounds = sorted({0, made, *folder.rounds_with(MINED_FILE)[-1:], *built})  # finish() builds the first three
    links = [(f"gallery of round {made}'s mining ({story})", _relative(folder, folder.gallery_path(made)))]
    links += [(f"gallery of round {r}", _relative(folder, folder.gallery_path(r))) for r in rounds if r != made]
    if folder.label_page_path().exists():
        links.append(("labeling page of the latest query", _relative(folder, folder.label_page_path())))
    return links


def _relative(folder: RunFolder, path: Path) -> str:
    return path.relative_to(folder.root).as_posix()


def learning_curve_rows(curve: dict[str, Any], intervals: tuple[str, ...] = tuple(CURVE_SHORT)) -> list[dict[str, str]]:
    """The learning curve of ``report.json`` as table rows of text: per step the labels so far and the
    melanomas among them, the batch's melanoma share against the pool's rate, and sens@spec90, AUPRC and
    AUROC on validation and test, with their 95% intervals over lesions for the metrics in ``intervals``."""

    def cell(m: dict[str, float], metric: str) -> str:
        return f"{m['value']:.2f} ({m['low']:.2f}-{m['high']:.2f})" if metric in intervals else f"{m['value']:.2f}"

    rows = []
    for row in curve["steps"]:
        share = row.get("batch_share")
        rate = row.get("pool_rate")
        batch = "-" if share is None else f"{share:.2f} of {row['batch']}" + (
            f", {share / rate:.1f}x pool" if rate else "")  # fmt: skip
        rows.append({"round": str(row["round"]), "update": row.get("update") or "initial", "labels": str(row["labels"]),
                     "melanomas": _fmt(row.get("positives")), "batch melanoma share": batch}
                    | {f"{split} {short}": cell(row[split][m], m) for split in ("val", "test")
                       for m, short in CURVE_SHORT.items()})  # fmt: skip
    return rows


def _outcome(verdicts: set[str], what: str) -> str:
    """What paired verdicts against round 0 on test say, in words (``what``: mining, or the labels)."""
    if verdicts == {"level"}:
        return f"level with round 0 within the 95% intervals: {what} did not measurably help on test"
    if "worse" in verdicts and "better" not in verdicts:
        return f"worse than round 0 on test: {what} hurt here"
    if "better" in verdicts and "worse" not in verdicts:
        return "better than round 0 on test"
    return "better than round 0 on some metrics and worse on others"


def _init_text(row: dict[str, Any]) -> str:
    """Where a round started: ``-`` (round 0), else as its strategy says (``rN``, ``scratch``, ``head rN``)."""
    if row["round"] == 0:
        return "-"
    if row.get("kind") == "step":
        return f"step: {get_update(row['update']).init_text(row.get('init_round'))}"
    return get_strategy(row.get("strategy", "finetune")).init_text(row.get("init_round"))


def before_after(report: dict[str, Any]) -> dict[str, Any] | None:
    """The before/after comparison of a ``--split-from`` run, for the console and ``report.html``: ``title``,
    ``header``, ``rows`` (metric, before, after, the paired difference with its interval and verdict) and
    ``warning`` (how the two recipes differ, when they do; else None); ``skipped`` alone when there is none
    to show; None for a run made without ``--split-from``."""
    before = report.get("before")
    if not before:
        return None
    if "skipped" in before:
        return {"skipped": before["skipped"]}
    rows = [[name, v["before"], v["after"], f"{v['difference']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}] "
             f"{v['verdict']}"] for name, v in before.items() if isinstance(v, dict)]  # fmt: skip
    changes = before.get("recipe_changes") or []
    warning = (f"the two runs were also trained differently ({'; '.join(changes)}): the difference mixes the label "
               f"fixes with the recipe's change; make the after run with --config BEFORE/{CONFIG_FILE} to keep the "
               "recipe") if changes else None  # fmt: skip
    return {"title": f"before ({before['run']}, its returned model) against after, on the same {before['images']} "
                     f"test images of {before['lesions']} lesions (95% bootstrap over lesions)",
            "header": ["metric", "before", "after", "after - before"], "rows": rows, "warning": warning}  # fmt: skip


def write_html_report(run_dir: str | os.PathLike) -> Path:
    """Plots and ``report.html`` (images inlined) for a finished run."""
    from hardmine.views import plots

    folder = RunFolder(run_dir)
    root = folder.root
    report = folder.report()
    best = report["best_round"]
    images = [plots.rounds_plot(report, root / ROUNDS_PNG)]
    curve = report.get("learning_curve")
    if curve:
        images.insert(0, plots.learning_curve_plot(curve, root / LEARNING_CURVE_PNG))
    reference = folder.reference()
    curves, returned = {}, None
    for model in evaluated_models(report):
        source = reference if model.in_reference else folder
        if source is not None and source.preds_path(model.round, "test").exists():
            preds = source.preds(model.round, "test")
            curves[model.name] = (preds["label"].to_numpy(), preds["prob_pos"].to_numpy())
            returned = curves[model.name] if model.returned else returned
    if curves:
        images += plots.curves_compare(curves, root, "test")
    if returned is not None:
        labels, prob = returned
        images.append(plots.score_histograms(labels, prob, report["test"]["threshold"], root / scores_png("test")))
    from hardmine.views.templates import render

    names = folder.class_names()
    t = report["test"]
    columns = columns_on_test(report)
    keys = ("auroc", "auprc", "sens_at_spec90", "spec_at_sens90", "pauc_sens80", "sensitivity", "specificity",
            "precision", "threshold", "tp", "fp", "tn", "fn")  # fmt: skip
    page = render(
        "report.html.jinja", filters={"cell": _fmt},
        run=root.name, select_by=report["select_by"], best=best, verdict=verdict_sentence(report),
        reference=report.get("reference"), returned=report.get("returned", "round"),
        round_header=ROUND_COLUMNS, round_rows=[[row[c] for c in ROUND_COLUMNS] for row in round_rows(report)],
        test_header=["metric", *columns], test_rows=[[k, *(c.get(k) for c in columns.values())] for k in keys],
        confusion_header=[f"the returned model on test (threshold {t['threshold']:.3f})", f"called {names[1]}",
                          f"called {names[0]}"],
        confusion_rows=[[f"true {names[1]}", t["tp"], t["fn"]], [f"true {names[0]}", t["fp"], t["tn"]]],
        figures=[(p.name, base64.b64encode(p.read_bytes()).decode()) for p in images],
        test_title="Test: " + ", ".join(columns),
        links=_page_links(folder),
        curve_header=list(learning_curve_rows(curve)[0]) if curve else [],
        curve_rows=[list(row.values()) for row in learning_curve_rows(curve)] if curve else [],
        stop_hint=(curve or {}).get("stop_hint"),
        before_after=before_after(report),
    )  # fmt: skip
    return write_bytes(root / REPORT_HTML, page.encode())


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def build(run_dir: str | os.PathLike, options: PageOptions) -> Path:
    """``report.html`` as a page of the family (:mod:`hardmine.views.pages`); it reads no option."""
    return write_html_report(run_dir)


def where(folder: RunFolder, options: PageOptions) -> Path:
    return folder.root / REPORT_HTML
