"""One mining step (:func:`mine`): triage, seeds, expansion and curriculum weights, and what it decided
(:class:`MiningResult`, whose :meth:`MiningResult.frame` is ``mined.csv``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hardmine.core.errors import HardmineError, warn
from hardmine.core.evidence import gather_evidence
from hardmine.core.index import NeighbourIndex
from hardmine.core.metrics import COST_FN, COST_FP, check_binary, check_costs
from hardmine.core.mining.config import QUARANTINE_WARN_SHARE, ROLES, MiningConfig, check_embeddings, check_k
from hardmine.core.mining.neighbours import spread
from hardmine.core.mining.seeds import choose_seeds
from hardmine.core.mining.suspects import flag_by_probabilities, flag_by_suspicion
from hardmine.core.scores import as_signals
from hardmine.core.suspicion import Evidence


@dataclass
class MiningResult:
    """Everything one mining step decided; arrays are (N,) unless stated."""

    labels: np.ndarray
    seeds: np.ndarray  # (S,) rows
    seed_reasons: np.ndarray  # (S,)
    hardness: np.ndarray  # rank in (0, 1], higher = harder
    quarantined: np.ndarray  # bool
    quarantine_reasons: np.ndarray  # object
    neighbour: np.ndarray  # contribution in [0, 1]
    pairs: pd.DataFrame  # seed, neighbour, similarity, contribution
    weights: np.ndarray  # curriculum weights, mean 1
    message: str = ""
    stats: dict[str, float] = field(default_factory=dict)
    evidence: Evidence | None = None  # label-suspicion evidence, when the triage used it

    def hard_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.labels), dtype=bool)
        mask[self.seeds] = True
        return mask

    def frame(self, ids) -> pd.DataFrame:
        """The ``mined.csv`` table: ``id,label,role,reasons,hardness,weight``."""
        ids = np.asarray(ids)
        rows: dict[int, dict[str, Any]] = {}
        for s, reason in zip(self.seeds, self.seed_reasons, strict=True):
            rows[int(s)] = {"role": "seed", "reasons": [reason], "hardness": self.hardness[s]}
        top = self.pairs.sort_values("contribution", ascending=False, kind="stable")
        for row in top.itertuples(index=False):
            j = int(row.neighbour)
            entry = rows.setdefault(j, {"role": "neighbour", "reasons": [], "hardness": self.neighbour[j]})
            if entry["role"] == "neighbour" and len(entry["reasons"]) < 3:
                entry["reasons"].append(f"neighbour-of:{ids[int(row.seed)]}@{row.similarity:.3f}")
        for q in np.flatnonzero(self.quarantined):
            rows[int(q)] = {"role": "quarantined", "reasons": [f"quarantined:{self.quarantine_reasons[q]}"],
                            "hardness": self.hardness[q]}  # fmt: skip
        order = sorted(rows, key=lambda i: (ROLES.index(rows[i]["role"]), -rows[i]["hardness"], i))
        # dtypes given: with nothing mined, pandas would make the empty text columns float
        return pd.DataFrame(
            {
                "id": pd.Series(ids[order], dtype=object),
                "label": pd.Series(self.labels[order], dtype=np.int64),
                "role": pd.Series([rows[i]["role"] for i in order], dtype=object),
                "reasons": pd.Series(["|".join(rows[i]["reasons"]) for i in order], dtype=object),
                "hardness": pd.Series(np.round([rows[i]["hardness"] for i in order], 6), dtype=np.float64),
                "weight": pd.Series(np.round(self.weights[order], 6), dtype=np.float64),
            }
        )


def mine(
    labels,
    prob_pos,
    embeddings: np.ndarray,
    threshold: float = 0.5,
    *,
    config: MiningConfig | None = None,
    groups: np.ndarray | None = None,
    triage_prob: np.ndarray | None = None,
    signals: Mapping[str, np.ndarray | None] | None = None,
    hard_history: np.ndarray | None = None,
    previous_weights: np.ndarray | None = None,
    evidence: Evidence | None = None,
    oof_prob: np.ndarray | None = None,
    trusted: np.ndarray | None = None,
    index=None,
    cost_fn: float = COST_FN,
    cost_fp: float = COST_FP,
    seed: int = 0,
) -> MiningResult:
    """One mining step: triage, select, expand, curriculum weights.

    Parameters
    ----------
    labels : (N,) 0/1. prob_pos : (N,) P(positive) used for seeds.
    embeddings : (N, D) L2-normalised embeddings.
    threshold : the round's decision threshold.
    triage_prob : (N,) probabilities for label-error triage (out-of-fold when
        available); defaults to ``prob_pos``.
    signals : the per-sample score columns (:class:`hardmine.core.scores.Signals`, built once from
        ``scores.csv`` by :meth:`~hardmine.core.scores.Signals.from_scores`, or a mapping of your arrays):
        what the ``hardness`` signal reads (``dynamics``, ``forgetting``, ``variability``, ...); its
        ``dynamics`` is also the evidence's training-confidence piece.
    hard_history : (R, N) bool, seeds of earlier rounds (for ``persistent``).
    previous_weights : (N,) last round's weights for the EMA.
    evidence : label-suspicion evidence (:mod:`hardmine.core.suspicion`) for ``quarantine="suspicion"``;
        gathered here from the embeddings, groups and the ``dynamics`` signal when None.
    oof_prob : (N,) class-balanced P(positive) from networks trained out of fold, the gathered
        evidence's out-of-fold part (:func:`hardmine.core.evidence.gather_evidence`); ignored when
        ``evidence`` is given.
    trusted : (N,) bool, labels confirmed outside the model (histopathology): never quarantined,
        and free to be seeds or neighbours whatever their suspicion.
    cost_fn, cost_fp : what a missed positive and a false alarm cost (the run's threshold costs): missed
        positives rank ahead of other seeds by their ratio.
    seed : seed of the evidence's out-of-fold folds (the run's seed), when evidence is gathered here.
    """
    from hardmine.core import curriculum

    config = config or MiningConfig()
    config.validate()
    y, p = check_binary(labels, prob_pos)
    emb = check_embeddings(embeddings, len(y))
    check_k(config.k, len(y))
    check_costs(cost_fn, cost_fp)
    signals = as_signals(signals)
    tp = p if triage_prob is None else check_binary(y, triage_prob, prob_name="triage_prob")[1]
    if config.quarantine == "suspicion" and evidence is None:
        index = index or NeighbourIndex(codec=config.index_codec).build(emb)
        confidence = 1 - signals["dynamics"] if "dynamics" in signals else None
        evidence = gather_evidence(y, np.arange(len(y)) if groups is None else groups, emb, confidence=confidence,
                                   k=config.triage_k, seed=seed, index=index, oof_prob=oof_prob)  # fmt: skip
    if config.quarantine == "suspicion":
        suspects, why = flag_by_suspicion(evidence, config.suspicion_threshold)
        # Doubtful labels (any reading of the evidence at the seed bar, short of quarantine) are not upweighted.
        unsafe = suspects | (evidence.doubt() >= config.seed_suspicion)
    else:
        suspects, why = flag_by_probabilities(y, tp, config.quarantine, hard_history, config.persistent_rounds)
        unsafe = suspects
    if trusted is not None:
        confirmed = np.asarray(trusted, dtype=bool)
        if confirmed.shape != y.shape:
            raise HardmineError(f"trusted has shape {confirmed.shape}; expected {y.shape}")
        suspects, unsafe = suspects & ~confirmed, unsafe & ~confirmed
        why = np.where(confirmed, "", why)
    selection = choose_seeds(y, p, threshold, scores=config.hardness, band=config.band, max_frac=config.max_frac,
                             cost_ratio=cost_fn / cost_fp, exclude=unsafe, signals=signals)  # fmt: skip
    # A suspect is never upweighted: not a seed (select excluded it), not a neighbour, no boost carried over.
    quarantined = suspects
    seeds = selection.index
    if index is None and len(seeds):
        index = NeighbourIndex(codec=config.index_codec).build(emb)
    exclude = unsafe.copy()
    exclude[seeds] = True
    expansion = spread(emb, seeds, y, groups, selection.hardness[seeds], config.k, config.min_sim, config.expand,
                       config.seed_cap, exclude, index)  # fmt: skip
    hard = np.zeros(len(y))
    hard[seeds] = selection.hardness[seeds]
    if len(seeds):
        weights = curriculum.weights(y, hard, expansion.contribution, config.alpha, config.beta, config.max_weight,
                                     previous=previous_weights, ema=config.ema, balance=config.balance,
                                     exclude=unsafe)  # fmt: skip
        message = ""
    else:  # a clean no-op: keep what the sampler had
        base = curriculum.weights(y, max_weight=config.max_weight, balance=config.balance)
        weights = base if previous_weights is None else np.asarray(previous_weights, dtype=np.float64)
        message = "no seeds: nothing misclassified or within the margin band; weights unchanged"
    share = float(quarantined.mean()) if len(y) else 0.0
    if share > QUARANTINE_WARN_SHARE:
        warn(f"{int(quarantined.sum())} of {len(y)} training images ({share:.0%}) quarantined as suspected label "
             "errors: far more than label noise usually is; the model is likely too weak to judge labels (train "
             "round 0 longer, check the class mapping), so look at the gallery before trusting the quarantine")
    st = curriculum.stats(weights, y)
    stats = {
        "n_seeds": len(seeds),
        "n_neighbours": int((expansion.contribution > 0).sum()),
        "n_quarantined": int(quarantined.sum()),
        "effective_class_ratio": st.effective_class_ratio,
        "effective_sample_size": st.effective_sample_size,
    }
    return MiningResult(y, seeds, selection.reasons, selection.hardness, quarantined, why,
                        expansion.contribution, expansion.pairs, weights, message, stats, evidence)  # fmt: skip
