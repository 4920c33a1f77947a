"""PNG plots from arrays (matplotlib, Agg backend): ROC, precision-recall, confusion matrix."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hardmine.io import atomic_path
from hardmine.metrics import binary_metrics, roc_points


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return path


def pr_points(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at every distinct threshold (highest threshold first)."""
    y = np.asarray(y_true)
    order = np.argsort(-np.asarray(score), kind="mergesort")
    s, y = np.asarray(score)[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last]
    return tps / max(y.sum(), 1), tps / (last + 1)


def evaluation_plots(
    labels: np.ndarray, prob_pos: np.ndarray, threshold: float, out_dir: str | os.PathLike, tag: str
) -> list[Path]:
    """Write ``roc_<tag>.png``, ``pr_<tag>.png`` and ``confusion_<tag>.png`` into ``out_dir``."""
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
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", color="black", fontsize=12)
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["pred neg", "pred pos"],
           yticklabels=["true neg", "true pos"], title=f"Confusion at {threshold:.3f} ({tag})")  # fmt: skip
    written.append(_save(fig, out / f"confusion_{tag}.png"))
    plt.close(fig)
    return written
