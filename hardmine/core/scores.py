"""Per-sample scores of a model's predictions, numpy in and numpy out, and the hardness signals as plug-ins.

Score directions: every hardness signal in :data:`HARDNESS` is higher = harder.
In the score table, ``loss``, ``entropy`` and ``el2n`` are higher = harder;
``logit_margin`` is the true class's logit minus the other's, so *lower* =
harder (negative = wrong side of 0.5). ``prob_pos`` is P(positive class), not
P(true label).

Adding a hardness signal: write ``def my_signal(p_true, signals) -> (N,)``
and add one line to :data:`HARDNESS`; ``--hardness`` offers it and mining
ranks seeds by it. ``signals`` is a :class:`Signals`, every per-sample column
the score step wrote (``signals.need("variability", n)``), built once from
``scores.csv`` and passed whole through mining.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from hardmine.core.errors import HardmineError
from hardmine.core.metrics import check_binary, softmax

# score columns that are not per-sample signals of hardness: identities and the thresholded decision
NOT_SIGNALS = ("id", "label", "pred", "correct")
# columns recorded only when the model's training dynamics were (hardmine train records them)
DYNAMICS_COLUMNS = ("confidence", "variability", "forgetting", "dynamics")


class Signals(Mapping[str, np.ndarray]):
    """Per-sample signals by name, each an (N,) float64 array: what a hardness function may read.

    Built once from a score table (:meth:`from_scores`: ``loss``, ``logit_margin``, ``entropy``,
    ``el2n``, and when recorded ``confidence``, ``variability``, ``forgetting``, ``dynamics``,
    ``prob_pos_oof``, the evidence columns, ...) or from arrays you computed (``Signals({"dynamics": d})``;
    None values are left out), then passed whole through mining, so a new signal reading any
    column needs no new parameter anywhere.
    """

    def __init__(self, columns: Mapping[str, ArrayLike | None] | None = None) -> None:
        self._columns: dict[str, np.ndarray] = {}
        for name, values in (columns or {}).items():
            if values is None:
                continue
            array = np.asarray(values, dtype=np.float64)
            if array.ndim != 1:
                raise HardmineError(f"signal {name!r} has shape {array.shape}; expected one value per sample")
            self._columns[str(name)] = array

    @classmethod
    def from_scores(cls, scores: pd.DataFrame) -> Signals:
        """Every numeric column of a score table (``scores.csv``) but its ids, labels and decisions."""
        return cls({name: scores[name].to_numpy() for name in scores.columns
                    if name not in NOT_SIGNALS and pd.api.types.is_numeric_dtype(scores[name])})  # fmt: skip

    def __getitem__(self, name: str) -> np.ndarray:
        return self._columns[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def need(self, name: str, n: int) -> np.ndarray:
        """The (n,) signal ``name``, or :class:`HardmineError` saying which are at hand and where it comes from."""
        if name not in self._columns:
            where = (" (recorded while training: train with hardmine, or pass your own)"
                     if name in DYNAMICS_COLUMNS else "")  # fmt: skip
            have = ", ".join(self._columns) or "none"
            raise HardmineError(f"hardness needs the score column {name!r}{where}; the scores have: {have}")
        values = self._columns[name]
        if values.shape != (n,):
            raise HardmineError(f"{name} has shape {values.shape}; expected ({n},)")
        if not np.isfinite(values).all():
            raise HardmineError(f"{name} has values that are not finite; expected {n} numbers")
        return values


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


def dynamics(p_true: np.ndarray, signals: Signals) -> np.ndarray:
    """1 - the mean probability of the true label over training epochs (recorded while training)."""
    return signals.need("dynamics", len(p_true))


def forgetting(p_true: np.ndarray, signals: Signals) -> np.ndarray:
    """Forgetting events: how often the image went from right to wrong between epochs (recorded while training)."""
    return signals.need("forgetting", len(p_true))


# name -> signal(p_true (N,), signals: Signals) -> (N,) hardness, higher = harder
HARDNESS: dict[str, Callable[[np.ndarray, Signals], np.ndarray]] = {
    "loss": loss,
    "margin": margin,
    "el2n": el2n,
    "dynamics": dynamics,
    "entropy": entropy,
    "forgetting": forgetting,
}


def hardness_scores(kind: str, labels, prob_pos, signals: Mapping[str, ArrayLike | None] | None = None) -> np.ndarray:
    """(N,) float64 hardness of each sample by the signal ``kind`` of :data:`HARDNESS` (higher = harder).

    ``signals``: the per-sample columns the signal may read (a :class:`Signals`, or a mapping made into
    one), e.g. ``dynamics`` and ``forgetting`` for the signals of those names.
    """
    if kind not in HARDNESS:
        raise HardmineError(f"unknown hardness {kind!r}; expected one of {', '.join(HARDNESS)}")
    y, p = check_binary(labels, prob_pos)
    p_true = np.where(y == 1, p, 1 - p)
    return np.asarray(HARDNESS[kind](p_true, as_signals(signals)), dtype=np.float64)


def as_signals(signals: Mapping[str, ArrayLike | None] | pd.DataFrame | None) -> Signals:
    """A :class:`Signals` as it is; a score table by :meth:`Signals.from_scores`; a mapping (or None) made into one."""
    if isinstance(signals, Signals):
        return signals
    return Signals.from_scores(signals) if isinstance(signals, pd.DataFrame) else Signals(signals)


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


def mining_inputs(scores: pd.DataFrame, source: str) -> tuple[np.ndarray, Signals]:
    """The (N,) P(positive) that drives mining for a score source (``insample``, ``oof``, ``dynamics``), and
    the table's :class:`Signals`."""
    if source not in MINING_PROBABILITY:
        raise HardmineError(f"score source {source!r} is not valid; expected one of {', '.join(MINING_PROBABILITY)}")
    return MINING_PROBABILITY[source](scores), Signals.from_scores(scores)


def _oof_probability(scores: pd.DataFrame) -> np.ndarray:
    if "prob_pos_oof" not in scores:
        raise HardmineError("the scores have no prob_pos_oof column: score with --scores oof first")
    return scores["prob_pos_oof"].to_numpy()


def _dynamics_probability(scores: pd.DataFrame) -> np.ndarray:
    if "confidence" not in scores:
        raise HardmineError("the scores have no training-dynamics columns (no training dynamics recorded)")
    conf = scores["confidence"].to_numpy()  # the mean P(given label) over training epochs
    return np.where(scores["label"].to_numpy() == 1, conf, 1 - conf)


# score source (--scores) -> the (N,) P(positive) that drives mining, from the score table
MINING_PROBABILITY: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "insample": lambda scores: scores["prob_pos"].to_numpy(),
    "oof": _oof_probability,
    "dynamics": _dynamics_probability,
}


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
