"""The run report: per-round rows, PNG plots and a self-contained ``report.html``.

Reads the files a run wrote (``report.json``, ``preds_*.csv``); no torch.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

import pandas as pd

from hardmine.io import write_bytes
from hardmine.runfolder import REPORT_HTML, RunFolder

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


def _init_text(row: dict[str, Any]) -> str:
    """Where a round started: ``-`` (round 0), ``rN`` (fine-tuned from round N), ``scratch``, ``head rN``."""
    if row["round"] == 0:
        return "-"
    if row.get("strategy") == "head":
        return f"head r{row.get('init_round', 0)}"
    return "scratch" if row.get("init_round") is None else f"r{row['init_round']}"


def write_html_report(run_dir: str | os.PathLike) -> Path:
    """Plots and ``report.html`` (images inlined) for a finished run."""
    from hardmine import plots

    folder = RunFolder(run_dir)
    root = folder.root
    report = folder.report()
    best = report["best_round"]
    images = [plots.rounds_plot(report, root / "rounds.png")]
    curves = {}
    for r, name in ((0, "round 0"), (best, f"best (round {best})")):
        path = folder.round_dir(r) / "preds_test.csv"
        if path.exists():
            preds = pd.read_csv(path)
            curves[name] = (preds["label"].to_numpy(), preds["prob_pos"].to_numpy())
    if curves:
        images += plots.curves_compare(curves, root, "test")
        labels, prob = list(curves.values())[-1]
        images.append(plots.score_histograms(labels, prob, report["test"]["threshold"], root / "scores_test.png"))
    rows = round_rows(report)
    table = _html_table(list(ROUND_COLUMNS), [[row[c] for c in ROUND_COLUMNS] for row in rows])
    keys = ("auroc", "auprc", "sens_at_spec90", "spec_at_sens90", "pauc_sens80", "sensitivity", "specificity",
            "precision", "threshold", "tp", "fp", "tn", "fn")  # fmt: skip
    test = _html_table(["metric", "round 0", f"best (round {best})"],
                       [[k, report["test_round0"].get(k), report["test"].get(k)] for k in keys])  # fmt: skip
    figures = "".join(
        f'<figure><img alt="{html.escape(p.name)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"></figure>'
        for p in images
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hardmine report: {html.escape(root.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}
figure{{display:inline-block;margin:0.5em}}img{{max-width:480px}}</style></head><body>
<h1>hardmine report: {html.escape(root.name)}</h1>
<p>Rounds are chosen on validation by <b>{html.escape(str(report["select_by"]))}</b>; the best is round {best}.
Test metrics use each model's validation-tuned threshold; the test split was never used to choose anything.</p>
<h2>Rounds (validation)</h2>{table}<h2>Test: round 0 against the best round</h2>{test}
<h2>Plots</h2>{figures}</body></html>
"""
    return write_bytes(root / REPORT_HTML, page.encode())


def _html_table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
