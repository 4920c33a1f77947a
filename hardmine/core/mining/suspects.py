"""Triage: which labels are suspected errors, to quarantine (never upweighted, listed for review)."""

from __future__ import annotations

import numpy as np

from hardmine.core.errors import HardmineError
from hardmine.core.metrics import check_binary
from hardmine.core.mining.config import QUARANTINE
from hardmine.core.suspicion import Evidence
from hardmine.core.suspicion import suspects as suspects_of


def triage(
    labels,
    prob_pos,
    method: str = "confident",
    *,
    hard_history: np.ndarray | None = None,
    persistent_rounds: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Suspected label errors.

    ``confident``: confident learning (Northcutt et al. 2021) with per-class
    thresholds t_c = mean P(c) over samples labelled c; a sample labelled c is
    suspect when P(other class) >= t_other. Use out-of-fold probabilities:
    in-sample ones have memorised the errors. ``persistent``: a seed in each
    of the last ``persistent_rounds`` rounds (``hard_history`` is (R, N) bool).

    Returns
    -------
    mask : (N,) bool, suspected label errors.
    why : (N,) object, the reason text ('' where not suspected).
    """
    if method == "suspicion":
        raise HardmineError("quarantine 'suspicion' reads label-suspicion evidence, not probabilities: use "
                            "hardmine.core.evidence.gather_evidence and hardmine.core.suspicion.suspects (or mine)")
    if method not in QUARANTINE:
        raise HardmineError(f"unknown quarantine method {method!r}; expected one of {', '.join(QUARANTINE)}")
    y, p = check_binary(labels, prob_pos)
    return flag_by_probabilities(y, p, method, hard_history, persistent_rounds)


def flag_by_probabilities(y, p, method, hard_history, persistent_rounds) -> tuple[np.ndarray, np.ndarray]:
    """:func:`triage` on inputs already checked (by it, or by :func:`hardmine.core.mining.mine`)."""
    mask = np.zeros(len(y), dtype=bool)
    why = np.full(len(y), "", dtype=object)
    if method in ("confident", "both") and 0 < y.sum() < len(y):
        t_pos = p[y == 1].mean()  # mean P(pos) among labelled positives
        t_neg = (1 - p[y == 0]).mean()  # mean P(neg) among labelled negatives
        suspect = ((y == 0) & (p >= t_pos)) | ((y == 1) & (1 - p >= t_neg))
        mask |= suspect
        for i in np.flatnonzero(suspect):
            why[i] = f"confident-learning(p_pos={p[i]:.3f})"
    if method in ("persistent", "both") and hard_history is not None:
        history = np.asarray(hard_history, dtype=bool)
        if history.ndim != 2 or history.shape[1] != len(y):
            raise HardmineError(f"hard_history has shape {history.shape}; expected (rounds, {len(y)})")
        if len(history) >= persistent_rounds:
            persistent = history[-persistent_rounds:].all(0)
            for i in np.flatnonzero(persistent):
                why[i] = (why[i] + ";" if why[i] else "") + f"persistent({persistent_rounds} rounds)"
            mask |= persistent
    return mask, why



def flag_by_suspicion(evidence: Evidence, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(N,) bool suspects of the label-suspicion ``evidence`` at ``threshold`` (its default when None), and
    (N,) object: why each one is, in words ('' where not suspected)."""
    mask = suspects_of(evidence, threshold)
    score = evidence.score()
    source = "out-of-fold networks" if evidence.networks else "out-of-fold"
    why = np.full(len(mask), "", dtype=object)
    for i in np.flatnonzero(mask):
        dyn = "" if evidence.dynamics is None else f", dynamics {evidence.dynamics[i]:.2f}"
        other = "" if evidence.neighbours_other is None else \
            f"; {evidence.neighbours_other[i]} of {evidence.neighbours_seen[i]} nearest other lesions labelled other"
        why[i] = (f"suspicion({score[i]:.2f}: {source} {evidence.oof[i]:.2f}, "
                  f"neighbours {evidence.neighbours[i]:.2f}{dyn}{other})")  # fmt: skip
    return mask, why
