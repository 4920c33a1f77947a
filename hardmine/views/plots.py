"""PNG plots from arrays (matplotlib, Agg backend): ROC, precision-recall, confusion matrix."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hardmine.core.io import atomic_path
from hardmine.core.metrics import binary_metrics, pr_points, roc_points


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return path


def evaluation_plots(
    labels: np.ndarray, prob_pos: np.ndarray, threshold: float, out_dir: str | os.PathLike, tag: str,
    class_names: tuple[str, str] = ("negative", "positive"),
) -> list[Path]:  # fmt: skip
    """Write ``roc_<tag>.png``, ``pr_<tag>.png`` and ``confusion_<tag>.png`` into ``out_dir``.

    ``class_names`` are (negative, positive) as the confusion matrix labels them.
    """
    plt = _pyplot()
    out = Path(out_dir)
    m = binary_metrics(labels, prob_pos, threshold)
    written = []

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    fpr, tpr, _ = roc_points(labels, prob_pos)
    ax.plot(fpr, tpr, lw=2, label=f"AUROC {m['auroc']:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.scatter([1 - m["specificity"]], [m["sensitivity"]], c="red", zorder=3, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity", title=f"ROC ({tag})")
    ax.legend(loc="lower right")
    written.append(_save(fig, out / f"roc_{tag}.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    recall, precision = pr_points(labels, prob_pos)
    ax.step(recall, precision, where="post", lw=2, label=f"AP {m['auprc']:.3f}")
    ax.axhline(np.mean(labels), ls="--", c="grey", lw=1, label="prevalence")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision", title=f"Precision-recall ({tag})", ylim=(0, 1.02))
    ax.legend(loc="upper right")
    written.append(_save(fig, out / f"pr_{tag}.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4, 3.6))
    matrix = np.array([[m["tn"], m["fp"]], [m["fn"], m["tp"]]])
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):  # light text on dark cells, dark on light
        ax.text(j, i, str(v), ha="center", va="center", fontsize=12,
                color="white" if v > matrix.max() / 2 else "black")  # fmt: skip
    negative, positive = class_names
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=[f"called {negative}", f"called {positive}"],
           yticklabels=[f"true {negative}", f"true {positive}"],
           title=f"Confusion at {threshold:.3f} ({tag})")  # fmt: skip
    written.append(_save(fig, out / f"confusion_{tag}.png"))
    plt.close(fig)
    return written


def rounds_plot(report: dict, out_path: str | os.PathLike) -> Path:
    """Validation selection metric, sensitivity and specificity per round."""
    plt = _pyplot()
    rounds = [row["round"] for row in report["rounds"]]
    key = report["select_by"]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, style in ((key, "o-"), ("sensitivity", "s--"), ("specificity", "^--")):
        if key == "cost" and name == key:
            continue
        ax.plot(rounds, [row["val"][name] for row in report["rounds"]], style, label=name)
    ax.axvline(report["best_round"], color="grey", ls=":", label=f"best round {report['best_round']}")
    reference = report.get("reference")
    if reference and key != "cost":
        ax.axhline(reference["val"][key], color="black", ls="-.", lw=1,
                   label=f"equal-epochs reference ({reference['epochs']} epochs)")  # fmt: skip
    ax.set(xlabel="round", ylabel="validation value", title="Rounds on validation", xticks=rounds, ylim=(0, 1.02))
    ax.legend(loc="lower right", fontsize=8)
    path = _save(fig, Path(out_path))
    plt.close(fig)
    return path


def learning_curve_plot(curve: dict, out_path: str | os.PathLike) -> Path:
    """An active-learning run's learning curve: validation and test sens@spec90, AUPRC and AUROC against the
    labels so far, each with its 95% interval over lesions (shaded), and the melanomas among the labels."""
    plt = _pyplot()
    steps = curve["steps"]
    labels = [row["labels"] for row in steps]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, split in zip(axes, ("val", "test"), strict=True):
        for metric, style in (("sens_at_spec90", "o-"), ("auprc", "s-"), ("auroc", "^-")):
            values = [row[split][metric] for row in steps]
            line = ax.plot(labels, [v["value"] for v in values], style, label=metric)[0]
            ax.fill_between(labels, [v["low"] for v in values], [v["high"] for v in values], alpha=0.15,
                            color=line.get_color())  # fmt: skip
        ax.set(xlabel="labels so far", title={"val": "validation", "test": "test (reported, never chosen on)"}[split],
               ylim=(0, 1.02))  # fmt: skip
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("value (95% interval over lesions)")
    axes[0].legend(loc="lower right", fontsize=8)
    found = axes[1].twinx()
    found.plot(labels, [row["positives"] or 0 for row in steps], "k:", label="melanomas labeled")
    found.set_ylabel("melanomas among the labels")
    found.legend(loc="upper left", fontsize=8)
    fig.suptitle("Learning curve: round 0 and each active-learning step")
    path = _save(fig, Path(out_path))
    plt.close(fig)
    return path


def curves_compare(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], out_dir: str | os.PathLike, tag: str
) -> list[Path]:
    """ROC and PR curves of several models on the same data: ``{name: (labels, prob_pos)}``."""
    plt = _pyplot()
    out = Path(out_dir)
    fig_roc, ax_roc = plt.subplots(figsize=(4.5, 4.5))
    fig_pr, ax_pr = plt.subplots(figsize=(4.5, 4.5))
    for name, (labels, prob) in curves.items():
        m = binary_metrics(labels, prob)
        fpr, tpr, _ = roc_points(labels, prob)
        ax_roc.plot(fpr, tpr, lw=2, label=f"{name} (AUROC {m['auroc']:.3f})")
        recall, precision = pr_points(labels, prob)
        ax_pr.step(recall, precision, where="post", lw=2, label=f"{name} (AP {m['auprc']:.3f})")
    ax_roc.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax_roc.axvline(0.1, ls=":", c="grey", lw=1)
    ax_roc.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"ROC ({tag})")
    ax_roc.legend(loc="lower right", fontsize=8)
    ax_pr.set(xlabel="recall", ylabel="precision", title=f"Precision-recall ({tag})", ylim=(0, 1.02))
    ax_pr.legend(loc="upper right", fontsize=8)
    paths = [_save(fig_roc, out / f"roc_{tag}.png"), _save(fig_pr, out / f"pr_{tag}.png")]
    plt.close(fig_roc)
    plt.close(fig_pr)
    return paths


def score_histograms(labels: np.ndarray, prob_pos: np.ndarray, threshold: float, out_path: str | os.PathLike) -> Path:
    """Histogram of P(positive) per true class, with the decision threshold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    bins = np.linspace(0, 1, 41)
    labels = np.asarray(labels)
    for cls, name in ((0, "negative"), (1, "positive")):
        ax.hist(np.asarray(prob_pos)[labels == cls], bins=bins, alpha=0.6, density=True, label=f"true {name}")
    ax.axvline(threshold, color="red", ls="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="P(positive)", ylabel="density", title="Scores per class")
    ax.legend(fontsize=8)
    path = _save(fig, Path(out_path))
    plt.close(fig)
    return path


def paired_plot(paired, out_path: str | os.PathLike) -> Path:
    """Paired differences (method minus its reference: the best baseline or the no-mining ablation) with their
    intervals, one panel per data set."""
    plt = _pyplot()
    datasets = list(dict.fromkeys(paired["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(9 * len(datasets), 0.35 * len(paired) / len(datasets) + 1.5),
                             squeeze=False, layout="constrained")  # fmt: skip  (long row labels need their room)
    colours = {"better": "tab:green", "level": "tab:grey", "worse": "tab:red"}
    for ax, name in zip(axes[0], datasets, strict=True):
        part = paired[paired["dataset"] == name].reset_index(drop=True)
        ypos = np.arange(len(part))[::-1]
        for y, row in zip(ypos, part.itertuples(index=False), strict=True):
            ax.errorbar(row.difference, y, xerr=[[row.difference - row.low], [row.high - row.difference]], fmt="o",
                        color=colours[row.verdict], capsize=3)  # fmt: skip
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(ypos, [f"{row.method} - {row.baseline}: {row.metric}" for row in part.itertuples(index=False)],
                      fontsize=8)  # fmt: skip
        ax.set_title(f"{name}: paired differences (95% bootstrap over seeds and lesions)")
        ax.set_xlabel("difference")
    path = _save(fig, Path(out_path))
    plt.close(fig)
    return path

