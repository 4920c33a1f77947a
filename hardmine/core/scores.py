"""Per-sample scores of a model's predictions, numpy in and numpy out, and the hardness signals as plug-ins.

Score directions: every hardness signal in :data:`HARDNESS` is higher = harder.
In the score table, ``loss``, ``entropy`` and ``el2n`` are higher = harder;
``logit_margin`` is the true class's logit minus the other's, so *lower* =
harder (negative = wrong side of 0.5). ``prob_pos`` is P(positive class), not
P(true label).

Adding a hardness signal: write ``def my_signal(p_true, signals) -> (N,)``
here and add one line to :data:`HARDNESS`; ``--hardness`` offers it and
mining ranks seeds by it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from hardmine.core.errors import HardmineError
from hardmine.core.metrics import check_binary, softmax

Signals = Mapping[str, "np.ndarray | None"]


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities, clipped to [1e-7, 1 - 1e-7] first (finite at 0 and 1)."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def loss(p_true: np.ndarray, signals: Signals) -> np.ndarray:
    """-log p(true label)."""
    return -np.log(np.clip(p_true, 1e-12, 1))


def margin(p_true: np.ndarray, signals: Signals) -> np.ndarray:
    """Minus the log-odds toward the true label."""
    return -logit(p_true)


def el2n(p_true: np.ndarray, signals: Signals) -> np.ndarray:
    """L2 norm of (softmax - one-hot)."""
    return np.sqrt(2.0) * (1 - p_true)


def entropy(p_true: np.ndarray, signals: Signals) -> np.ndarray:
    """Entropy of the predicted distribution: uncertainty, whichever side of 0.5 the label is."""
    p = np.clip(p_true, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def _recorded(name: str, signals: Signals, shape: tuple[int, ...]) -> np.ndarray:
    values = signals.get(name)
    if values is None:
        raise HardmineError(f"hardness {name!r} needs the training-dynamics scores (train with dynamics recorded)")
    values = np.asarray(values, dtype=np.float64)
    if values.shape != shape:
        raise HardmineError(f"{name} has shape {values.shape}; expected {shape}")
    return values


def dynamics(p_true: np.ndarray, signals: Signals) -> np.ndarray:
    """1 - the mean probability of the true label over training epochs (recorded while training)."""
    return _recorded("dynamics", signals, p_true.shape)


def forgetting(p_true: np.ndarray, signals: Signals) -> np.ndarray:
    """Forgetting events: how often the image went from right to wrong between epochs (recorded while training)."""
    return _recorded("forgetting", signals, p_true.shape)


# name -> signal(p_true (N,), signals {"dynamics", "forgetting": (N,) or None}) -> (N,) hardness, higher = harder
HARDNESS: dict[str, Callable[[np.ndarray, Signals], np.ndarray]] = {
    "loss": loss,
    "margin": margin,
    "el2n": el2n,
    "dynamics": dynamics,
    "entropy": entropy,
    "forgetting": forgetting,
}


def hardness_scores(
    kind: str, labels, prob_pos, dynamics: np.ndarray | None = None, forgetting: np.ndarray | None = None
) -> np.ndarray:
    """(N,) float64 hardness of each sample by the signal ``kind`` of :data:`HARDNESS` (higher = harder).

    ``dynamics`` (1 - mean training confidence) and ``forgetting`` (forgetting events) are the
    training-dynamics columns of ``scores.csv``, needed by the signals of the same names.
    """
    if kind not in HARDNESS:
        raise HardmineError(f"unknown hardness {kind!r}; expected one of {', '.join(HARDNESS)}")
    y, p = check_binary(labels, prob_pos)
    p_true = np.where(y == 1, p, 1 - p)
    return np.asarray(HARDNESS[kind](p_true, {"dynamics": dynamics, "forgetting": forgetting}), dtype=np.float64)


SCORE_COLUMNS = ("id", "label", "prob_pos", "logit_margin", "loss", "pred", "correct", "entropy", "el2n")


def score_table(ids: Sequence, labels: np.ndarray, logits: np.ndarray, threshold: float = 0.5) -> pd.DataFrame:
    """Per-sample score table from logits.

    Parameters
    ----------
    ids : (N,) sample ids.
    labels : (N,) 0/1 labels.
    logits : (N, 2) logits (or (N,) probabilities of the positive class when
        only probabilities are known; margins are then log-odds).
    threshold : predict positive when ``prob_pos >= threshold``.

    Returns
    -------
    DataFrame with :data:`SCORE_COLUMNS`.
    """
    labels = np.asarray(labels).astype(np.int64)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 1:
        logits = logits_from_probs(logits)
    if logits.shape != (len(labels), 2):
        raise HardmineError(f"logits have shape {logits.shape}; expected ({len(labels)}, 2)")
    if len(ids) != len(labels):
        raise HardmineError(f"{len(ids)} ids for {len(labels)} labels")
    probs = softmax(logits)
    rows = np.arange(len(labels))
    p_true = np.clip(probs[rows, labels], 1e-12, 1.0)
    onehot = np.eye(2)[labels]
    pred = (probs[:, 1] >= threshold).astype(np.int64)
    return pd.DataFrame(
        {
            "id": np.asarray(ids),
            "label": labels,
            "prob_pos": probs[:, 1],
            "logit_margin": logits[rows, labels] - logits[rows, 1 - labels],
            "loss": -np.log(p_true),
            "pred": pred,
            "correct": pred == labels,
            "entropy": -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(1),
            "el2n": np.linalg.norm(probs - onehot, axis=1),
        }
    )


def logits_from_probs(prob_pos: np.ndarray) -> np.ndarray:
    """(N,) positive-class probabilities to (N, 2) logits ``[0, log-odds]``."""
    odds = logit(np.asarray(prob_pos, dtype=np.float64))
    return np.stack([np.zeros_like(odds), odds], axis=1)


def mining_inputs(scores: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The P(positive) that drives mining for a score source (``insample``, ``oof``, ``dynamics``), and the
    dynamics hardness if recorded."""
    dynamics = scores["dynamics"].to_numpy() if "dynamics" in scores else None
    if source == "oof":
        if "prob_pos_oof" not in scores:
            raise HardmineError("the scores have no prob_pos_oof column: score with --scores oof first")
        return scores["prob_pos_oof"].to_numpy(), dynamics
    if source == "dynamics":
        if "confidence" not in scores:
            raise HardmineError("the scores have no training-dynamics columns (no training dynamics recorded)")
        conf = scores["confidence"].to_numpy()
        return np.where(scores["label"].to_numpy() == 1, conf, 1 - conf), dynamics
    return scores["prob_pos"].to_numpy(), dynamics


def dynamics_scores(losses: np.ndarray, p_true: np.ndarray) -> pd.DataFrame:
    """Training-dynamics statistics (dataset cartography, forgetting events).

    Parameters
    ----------
    losses, p_true : (E, N) per-epoch loss and probability of the true label of
        each training sample as recorded during training; NaN where a sample
        was not drawn in an epoch.

    Returns
    -------
    DataFrame (N rows): ``confidence`` (mean p_true; lower = harder),
    ``variability`` (std of p_true), ``forgetting`` (times a sample went from
    right to wrong between draws), ``dynamics`` (hardness in [0, 1], higher =
    harder: 1 - confidence).
    """
    p = np.asarray(p_true, dtype=np.float64)
    seen = np.isfinite(p)
    count = seen.sum(0)
    filled = np.where(seen, p, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(count > 0, filled.sum(0) / np.maximum(count, 1), 0.5)
        variance = np.where(count > 0, (np.where(seen, (p - confidence) ** 2, 0)).sum(0) / np.maximum(count, 1), 0)
    forgetting = np.zeros(p.shape[1], dtype=np.int64)
    last_correct = np.full(p.shape[1], -1)  # -1 unknown, 0 wrong, 1 right
    for epoch in range(p.shape[0]):
        now = np.where(seen[epoch], (p[epoch] > 0.5).astype(int), -1)
        forgetting += (last_correct == 1) & (now == 0)
        last_correct = np.where(now >= 0, now, last_correct)
    return pd.DataFrame(
        {
            "confidence": confidence,
            "variability": np.sqrt(variance),
            "forgetting": forgetting,
            "dynamics": 1 - confidence,
        }
    )
