"""What the command line draws: rich progress bars, metric and round tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from hardmine.run.compare import Comparison

console = Console()
if not console.is_terminal:  # logs and pipes: wide enough for the round table
    console = Console(width=130)
err_console = Console(stderr=True)


class ProgressEvents:
    """Turns library progress events into rich progress bars and one-line notes."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.label = ""
        self.task = None
        self.bar: tuple[str, int] | None = None
        self.fold = ""  # the out-of-fold network about to be fitted, said once fit tells whether it trains

    def _bar(self, kind: str, description: str, total: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(description, total=total)
        self.bar = (kind, total)

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        handler = self.HANDLERS.get(event)
        if handler is not None:
            handler(self, info)

    def _say(self, text: str) -> None:
        self.progress.console.print(text)

    def _epoch_start(self, info: dict[str, Any]) -> None:
        head = " (head)" if info["frozen"] else ""
        self._bar("epoch", f"{self.label}epoch {info['epoch'] + 1}/{info['total_epochs']}{head}", info["steps"])

    def _batch(self, info: dict[str, Any]) -> None:
        if info.get("phase") == "predict":
            if self.bar != ("predict", info["total"]):
                self._bar("predict", f"{self.label}scoring", info["total"])
            self.progress.update(self.task, completed=info["done"])
        elif self.task is not None:
            self.progress.update(self.task, completed=info["step"])

    def _epoch_end(self, info: dict[str, Any]) -> None:
        val = info["val"]
        star = "  *" if info["improved"] else ""
        self._say(f"{self.label}epoch {info['epoch'] + 1}: train loss {info['train_loss']:.4f}  "
                  f"val AUROC {val['auroc']:.3f}  AUPRC {val['auprc']:.3f}{star}")  # fmt: skip

    def _plan(self, info: dict[str, Any]) -> None:
        if not info["resume"]:
            return
        done = info["completed"]
        left = info["target"] - (done[-1] if done else -1)
        why = ("the round the interrupted call aimed for, from its manifest" if info.get("from_manifest") else
               "no manifest records what the interrupted call aimed for: --n rounds after the last completed")
        self._say(f"resuming towards round {info['target']}: rounds {', '.join(map(str, done)) or 'none'} done, "
                  f"{max(left, 0)} to go ({why})")  # fmt: skip

    def _step(self, info: dict[str, Any]) -> None:
        self.label = f"round {info['round']}: "
        if info["step"] != "train":
            self._say(f"round {info['round']}: {info['step']}")

    def _round_end(self, info: dict[str, Any]) -> None:
        val = info["val"]
        flag = "  (worse than the best: next round starts from the best)" if info.get("worse") else ""
        self._say(f"[bold]round {info['round']} done[/]: val AUROC {val['auroc']:.3f}, "
                  f"sens@spec90 {val['sens_at_spec90']:.3f}{flag}")  # fmt: skip

    def _fold_start(self, info: dict[str, Any]) -> None:
        self.fold = f"{self.label}out-of-fold model {info['fold'] + 1}/{info['folds']}"

    def _fit_start(self, info: dict[str, Any]) -> None:
        start, total = info["start_epoch"], info["total_epochs"]
        resumed = f" (resumed at epoch {start + 1}/{total})" if 0 < start < total else ""
        if self.fold:
            self._say(self.fold + (": trained before, reused" if start >= total else resumed))
            self.fold = ""
        elif resumed:
            self._say(f"{self.label}training{resumed}")

    def _compare_start(self, info: dict[str, Any]) -> None:
        self.label = f"{info['method']} seed {info['seed']}: "
        self._say(f"[bold]{self.label}[/]")

    # callback event -> what the console shows for it (events not named here show nothing)
    HANDLERS: dict[str, Callable[[ProgressEvents, dict[str, Any]], None]] = {
        "epoch_start": _epoch_start, "batch": _batch, "epoch_end": _epoch_end, "plan": _plan, "step": _step,
        "round_end": _round_end, "fold_start": _fold_start, "fit_start": _fit_start, "compare_start": _compare_start,
    }  # fmt: skip


def print_start(run, rounds: int) -> None:
    """Before a new run trains: where its starting weights come from and, on a CPU with a backbone larger
    than the tiny one, how long it will take, with the fast path (``--frozen``) beside it when it is not
    taken already."""
    from dataclasses import replace

    from hardmine.engine.runtime import Engine
    from hardmine.record.layout import MODEL_FILE
    from hardmine.run.estimate import duration_text, estimate_run, image_costs

    config = run.config
    console.print(f"starting weights: {run.config_dict().get('weights_source', config.train.weights)}")
    if config.mining.trusted:
        train = run.part("train")
        trusted = int(config.mining.trusted_mask(train).sum())
        console.print(f"trusted labels ({config.mining.trusted}): {trusted} of {len(train)} training images are "
                      "never quarantined as label errors; --trusted none doubts every label")  # fmt: skip
    if config.train.model == "tiny" or Engine(config.train).device.type != "cpu" or run.rounds_with(MODEL_FILE):
        return  # fast enough, on a GPU, or begun already
    sizes = run.split.value_counts().to_dict()
    costs = image_costs(config)  # measured once: the fast path runs the same model
    estimate = estimate_run(config, sizes, rounds, costs)
    text = (f"on this CPU the run will take about {duration_text(estimate.seconds)} ({config.train.model} at "
            f"{config.train.image_size} px: {estimate.train_image_s * 1000:.0f} ms per training image, "
            f"{estimate.infer_image_s * 1000:.0f} ms per scored image, measured here)")  # fmt: skip
    if not config.train.frozen and config.train.weights != "none":
        frozen = replace(config, train=replace(config.train, frozen=True),
                         rounds=replace(config.rounds, strategy="head", update="head"))  # fmt: skip
        fast = estimate_run(frozen, sizes, rounds, costs)
        text += (f"; the fast path, --frozen (the pretrained backbone kept, its head fitted), about "
                 f"{duration_text(fast.seconds)}")  # fmt: skip
    console.print(text)


def progress_bars() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=console, transient=True,
    )  # fmt: skip


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.{digits}f}"
    return str(value)


DASH = "\u2013"


def frame_table(frame: pd.DataFrame, title: str, digits: int = 3) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for col in frame.columns:
        table.add_column(str(col), justify="left" if frame[col].dtype == object else "right", overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(fmt(v, digits) for v in row))
    return table


def metrics_table(rows: dict[str, dict[str, Any]], title: str) -> Table:
    keys = ["auroc", "auprc", "sensitivity", "specificity", "sens_at_spec90", "pauc_sens80",
            "precision", "f1", "threshold", "n", "n_pos", "tp", "fp", "tn", "fn"]  # fmt: skip
    cells = {name: [r.get(k) for k in keys] for name, r in rows.items()}
    for key in ("auroc_ci", "sensitivity_ci"):
        if any(key in r for r in rows.values()):
            keys.append(key)
            for name, r in rows.items():
                cells[name].append(f"[{fmt(r[key][0])}, {fmt(r[key][1])}]" if key in r else "")
    return frame_table(pd.DataFrame({"metric": keys} | cells, dtype=object), title, digits=4)


def print_report(report: dict[str, Any]) -> None:
    from hardmine.views.report import (
        before_after,
        columns_on_test,
        learning_curve_rows,
        round_rows,
        verdict_sentence,
    )

    short = {"round": "rnd", "sens_at_spec90": "se@sp90", "sensitivity": "sens", "specificity": "spec",
             "threshold": "thr", "neighbours": "nbrs", "quarantined": "quar", "eff_class_ratio": "pos:neg"}  # fmt: skip
    rounds = pd.DataFrame(round_rows(report), dtype=object)
    rounds["round"] = [f"{r}*" if r == report["best_round"] else str(r) for r in rounds["round"]]
    for column in ("seeds", "neighbours", "quarantined", "eff_class_ratio"):  # round 0 was fed by no mining
        rounds[column] = [DASH if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in rounds[column]]
    rounds = rounds.rename(columns=short)
    console.print(frame_table(rounds.astype(object), f"rounds on validation (best by {report['select_by']}: *)"))
    if report.get("reference"):
        ref = report["reference"]
        console.print(f"equal-epochs reference (round 0's recipe, {ref['epochs']} epochs): val AUROC "
                      f"{fmt(ref['val']['auroc'], 3)}, sens@spec90 {fmt(ref['val']['sens_at_spec90'], 3)}")  # fmt: skip
    console.print(metrics_table(columns_on_test(report), "test split (thresholds tuned on validation)"))
    curve = report.get("learning_curve")
    if curve:
        rows = learning_curve_rows(curve, intervals=("sens_at_spec90",))  # every interval: report.json, report.html
        console.print(frame_table(pd.DataFrame(rows, dtype=object), "learning curve: round 0 and each active-learning "
                                  "step (sens@spec90 with its 95% interval over lesions)"))  # fmt: skip
        if curve.get("stop_hint"):
            console.print(f"stopping hint: {curve['stop_hint']}")
    console.print(verdict_sentence(report))
    compared = before_after(report)
    if compared and "skipped" in compared:
        console.print(f"no before/after comparison: {compared['skipped']}")
    elif compared:
        console.print(frame_table(pd.DataFrame(compared["rows"], columns=compared["header"]), compared["title"]))
        if compared["warning"]:
            console.print(f"[bold]note:[/bold] {compared['warning']}")


def print_comparison(result: Comparison, seeds: int) -> None:
    """The test metrics of every method (mean ± std over seeds) and the paired differences of a
    :class:`hardmine.run.compare.Comparison`."""
    from hardmine.run.compare import REPORTED

    summary = result.summary
    shown = pd.DataFrame({"method": summary["method"], "epochs": summary["epochs_mean"],
                          "wall s": summary["wall_s_mean"]} | {
        key: [f"{m:.3f} ± {fmt(s, 3)}" for m, s in zip(summary[f"{key}_mean"], summary[f"{key}_std"], strict=True)]
        for key in REPORTED
    })  # fmt: skip
    console.print(frame_table(shown, f"test metrics, mean ± std over {seeds} seed(s)", digits=0))
    if len(result.paired):
        main = result.paired[~result.paired["metric"].str.startswith("sens[")]
        console.print(frame_table(main, f"paired differences, method minus baseline ({result.best_baseline} is the "
                                        "best on validation; no-mining-* is the ablation of hardmine-*), 95% "
                                        "bootstrap over seeds and lesions"))  # fmt: skip


def answer_counts(counts: dict[str, int]) -> str:
    """``{"mel": 3, "nv": 5}`` as ``"3 mel, 5 nv"``."""
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))


def print_query(run, picked: pd.DataFrame, pool_size: int | None = None, answered_before: int = 0,
                answered: bool = False) -> None:  # fmt: skip
    """A query's one-line summary and where to label it (``answered``: the oracle answered it already)."""
    if answered:
        console.print(f"last query ({len(picked)} images) answered by the oracle; {run.query_path()}")
        return
    likely = int((picked["prob_pos"] >= 0.5).sum())
    of = f" of {pool_size} pool images" if pool_size is not None else ""
    skipped = f" ({answered_before} answered before, not asked again)" if answered_before else ""
    console.print(f"{len(picked)}{of} to label{skipped}: {picked['group'].nunique()} lesions, {likely} with "
                  f"P(positive) >= 0.5 -> {run.query_path()}")  # fmt: skip
    console.print(f"label them: {run.label_page_path()} (or `hardmine gallery {run.root} --label --serve`), "
                  f"then `hardmine label {run.root} answers.csv`")  # fmt: skip

