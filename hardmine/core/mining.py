"""Hard-example mining, numpy in and numpy out: seeds, triage, neighbour expansion.

Score direction: every hardness score here is higher = harder.

1. :func:`select` takes the misclassified samples (at the round's decision
   threshold) and the low-margin ones (within ``band`` log-odds of the
   threshold), ranks them by a hardness score, and keeps per-class quotas;
   missed positives rank first by the cost ratio.
2. :func:`triage` flags suspected label errors (confident learning's
   per-class thresholds on, ideally out-of-fold, probabilities; or hard in
   every one of the last rounds). They are quarantined: not upweighted, not
   expanded, listed for review.
3. :func:`expand` spreads each seed's attention to its k nearest neighbours in
   embedding space, decaying with similarity, capped per seed; other images of
   the seed's own lesion count once.

:func:`mine` runs all three and returns a :class:`MiningResult` whose
:meth:`MiningResult.frame` is the ``mined.csv`` table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hardmine.core.errors import HardmineError, warn
from hardmine.core.evidence import gather_evidence
from hardmine.core.index import NeighbourIndex, check_codec
from hardmine.core.metrics import check_binary, check_costs
from hardmine.core.scores import HARDNESS, hardness_scores, logit
from hardmine.core.suspicion import DEFAULT_SEED_SUSPICION, Evidence
from hardmine.core.suspicion import suspects as suspects_of

EXPAND = ("same-label", "opposite-label", "both")
QUARANTINE = ("suspicion", "confident", "persistent", "both", "none")
ROLES = ("seed", "neighbour", "quarantined")
# Above this share of the training set a quarantine says more about the model than about the labels.
QUARANTINE_WARN_SHARE = 0.2


@dataclass
class MiningConfig:
    """Options of one mining step (JSON-serialisable)."""

    hardness: str = "loss"
    band: float = 1.0  # low-margin band, in log-odds around the threshold
    max_frac: float = 0.2  # per-class quota, as a share of the class
    quarantine: str = "suspicion"
    # quarantine at this label suspicion; None: the measured default of the evidence (suspicion.default_threshold)
    suspicion_threshold: float | None = None
    seed_suspicion: float = DEFAULT_SEED_SUSPICION  # a seed or neighbour must have less doubt than this
    persistent_rounds: int = 3
    k: int = 10  # neighbours each seed spreads its weight to
    triage_k: int = 10  # other-lesion neighbours in the label-suspicion vote
    min_sim: float = 0.5
    expand: str = "same-label"
    seed_cap: float = 3.0  # most total neighbour contribution one seed hands out
    alpha: float = 1.0
    beta: float = 0.5
    max_weight: float = 10.0
    ema: float = 0.5
    index_codec: str = "flat"  # IVF storage above the exact-search size: flat | sq8 | pqM
    balance: bool = True  # multiply by class-balance weights
    # COLUMN=VALUE[,VALUE...]: labels confirmed outside the model (HAM10000: dx_type=histo) are never
    # quarantined nor kept from seeding by suspicion; "" trusts none
    trusted: str = ""

    def validate(self) -> None:
        """Check every option; raises :class:`HardmineError` naming the bad value."""
        for name, valid in (("hardness", HARDNESS), ("expand", EXPAND), ("quarantine", QUARANTINE)):
            if getattr(self, name) not in valid:
                raise HardmineError(f"{name}={getattr(self, name)!r} is not valid; expected one of {', '.join(valid)}")
        checks = (
            (0 < self.max_frac <= 1, f"max_frac={self.max_frac} must be in (0, 1]"),
            (self.band >= 0, f"band={self.band} must be >= 0"),
            (-1 <= self.min_sim <= 1, f"min_sim={self.min_sim} must be a cosine similarity in [-1, 1]"),
            (self.k >= 1, f"k={self.k} must be at least 1"),
            (self.triage_k >= 1, f"triage_k={self.triage_k} must be at least 1"),
            (0 <= self.alpha < np.inf and 0 <= self.beta < np.inf,
             f"alpha={self.alpha} and beta={self.beta} must be finite and >= 0"),
            (1 <= self.max_weight < np.inf,
             f"max_weight={self.max_weight} must be finite and >= 1 (it is a multiple of the mean)"),
            (0 <= self.ema < 1, f"ema={self.ema} must be in [0, 1)"),
            (self.seed_cap > 0, f"seed_cap={self.seed_cap} must be > 0"),
            (self.persistent_rounds >= 1, f"persistent_rounds={self.persistent_rounds} must be at least 1"),
            (self.suspicion_threshold is None or 0 < self.suspicion_threshold <= 1,
             f"suspicion_threshold={self.suspicion_threshold} must be in (0, 1]"),
            (0 < self.seed_suspicion <= 1, f"seed_suspicion={self.seed_suspicion} must be in (0, 1]"),
        )
        for ok, message in checks:
            if not ok:
                raise HardmineError(message)
        check_codec(self.index_codec)
        self.trusted_rule()

    def trusted_mask(self, table: pd.DataFrame) -> np.ndarray | None:
        """(N,) bool: rows of a sample table whose label the ``trusted`` rule confirms (None without a rule)."""
        rule = self.trusted_rule()
        if rule is None:
            return None
        column, values = rule
        if column not in table:
            raise HardmineError(f"--trusted {self.trusted!r}: the data has no column {column!r}; columns: "
                                f"{', '.join(map(str, table.columns))}")  # fmt: skip
        return table[column].astype(str).isin(values).to_numpy()

    def trusted_rule(self) -> tuple[str, list[str]] | None:
        """``(column, values)`` of ``trusted`` (None when empty); raises on a malformed rule."""
        if not self.trusted:
            return None
        column, sep, values = self.trusted.partition("=")
        names = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not column.strip() or not names:
            raise HardmineError(f"--trusted {self.trusted!r} is not valid; expected COLUMN=VALUE[,VALUE...], "
                                "e.g. dx_type=histo")  # fmt: skip
        return column.strip(), names

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- inputs


def check_k(k: int, n: int) -> None:
    """k neighbours need more than k samples."""
    if k >= n:
        raise HardmineError(f"k={k} neighbours asked for but only {n} samples (k must be < N)")


def rank01(values: np.ndarray) -> np.ndarray:
    """Percentile rank in (0, 1] (ties share the higher rank); robust across score scales."""
    values = np.asarray(values, dtype=np.float64)
    order = np.sort(values)
    return np.searchsorted(order, values, side="right") / len(values)


# --------------------------------------------------------------------------- select


@dataclass
class Selection:
    """Seeds chosen by :func:`select`.

    index : (S,) seed rows, hardest first.
    reasons : (S,) ``misclassified`` or ``low-margin``.
    hardness : (N,) hardness rank in (0, 1] of every sample (higher = harder).
    candidates : (N,) bool, every sample that met a seed criterion, before exclusion and quotas.
    """

    index: np.ndarray
    reasons: np.ndarray
    hardness: np.ndarray
    candidates: np.ndarray


def select(
    labels,
    prob_pos,
    threshold: float = 0.5,
    *,
    scores: np.ndarray | str = "loss",
    band: float = 1.0,
    max_frac: float = 0.2,
    cost_fn: float = 10.0,
    cost_fp: float = 1.0,
    exclude: np.ndarray | None = None,
    dynamics: np.ndarray | None = None,
    forgetting: np.ndarray | None = None,
) -> Selection:
    """Seeds: misclassified and low-margin samples, hardest first, per-class quotas.

    Parameters
    ----------
    labels : (N,) 0/1. prob_pos : (N,) P(positive).
    threshold : the round's decision threshold (positive when ``prob_pos >= threshold``).
    scores : a hardness name (see :func:`hardness_scores`) or an (N,) array, higher = harder.
    band : low-margin band: correct samples within ``band`` log-odds of the threshold.
    max_frac : at most this share of each class becomes seeds.
    cost_fn, cost_fp : false negatives rank ahead by ``cost_fn / cost_fp``.
    exclude : (N,) bool, samples never chosen (e.g. quarantined).
    dynamics, forgetting : (N,) training-dynamics columns, for the hardness signals of the same names.
    """
    y, p = check_binary(labels, prob_pos)
    MiningConfig(band=band, max_frac=max_frac).validate()
    check_costs(cost_fn, cost_fp)
    return _select(y, p, threshold, scores, band, max_frac, cost_fn / cost_fp, exclude, dynamics, forgetting)


def _select(y, p, threshold, scores, band, max_frac, cost_ratio, exclude, dynamics, forgetting) -> Selection:
    raw = hardness_scores(scores, y, p, dynamics, forgetting) if isinstance(scores, str) else np.asarray(scores, float)
    if raw.shape != y.shape or not np.isfinite(raw).all():
        raise HardmineError(f"hardness scores must be {y.shape} finite values")
    hardness = rank01(raw)
    pred = p >= threshold
    misclassified = pred != (y == 1)
    low_margin = ~misclassified & (np.abs(logit(p) - logit(threshold)) < band)
    candidates = misclassified | low_margin
    eligible = candidates if exclude is None else candidates & ~np.asarray(exclude, dtype=bool)
    priority = hardness * np.where(misclassified & (y == 1), cost_ratio, 1.0)
    priority = priority + misclassified  # misclassified before low-margin within a class
    chosen = []
    for cls in (1, 0):
        members = np.flatnonzero(eligible & (y == cls))
        quota = int(np.floor(max_frac * np.sum(y == cls)))
        order = members[np.argsort(-priority[members], kind="stable")]
        chosen.append(order[:quota])
    index = np.concatenate(chosen)
    index = index[np.argsort(-priority[index], kind="stable")]
    reasons = np.where(misclassified[index], "misclassified", "low-margin").astype(object)
    return Selection(index.astype(np.int64), reasons, hardness, candidates)


# --------------------------------------------------------------------------- triage


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
    return _triage(y, p, method, hard_history, persistent_rounds)


def _triage(y, p, method, hard_history, persistent_rounds) -> tuple[np.ndarray, np.ndarray]:
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


# --------------------------------------------------------------------------- expand


@dataclass
class Expansion:
    """Neighbour contributions from :func:`expand`.

    contribution : (N,) float in [0, 1], 0 for non-neighbours.
    pairs : DataFrame ``seed, neighbour, similarity, contribution`` (row numbers).
    """

    contribution: np.ndarray
    pairs: pd.DataFrame


def expand(
    embeddings: np.ndarray,
    seed_index: np.ndarray,
    labels,
    groups: np.ndarray | None = None,
    *,
    strength: np.ndarray | None = None,
    k: int = 10,
    min_sim: float = 0.5,
    mode: str = "same-label",
    seed_cap: float = 3.0,
    exclude: np.ndarray | None = None,
    index=None,
) -> Expansion:
    """Spread seed attention to near neighbours in embedding space.

    Parameters
    ----------
    embeddings : (N, D) L2-normalised (cosine similarity = inner product).
    seed_index : (S,) seed rows.
    labels : (N,) 0/1. groups : (N,) group keys; the seed's own group counts once.
    strength : (S,) per-seed strength in [0, 1] (default 1), e.g. its hardness.
    k : neighbours per seed. min_sim : least cosine similarity that counts.
    mode : ``same-label``, ``opposite-label`` or ``both`` (label relation to the seed).
    seed_cap : most total decay mass one seed hands out; more is scaled down.
    exclude : (N,) bool, never a neighbour (seeds, quarantined).
    index : a built :class:`hardmine.core.index.NeighbourIndex` over ``embeddings`` (built if None).

    A neighbour at similarity s receives ``strength * (s - min_sim) / (1 - min_sim)``;
    contributions from several seeds add up, clipped to 1.
    """
    MiningConfig(expand=mode, k=k, min_sim=min_sim, seed_cap=seed_cap).validate()
    y, _ = check_binary(labels)
    emb = _check_embeddings(embeddings, len(y))
    check_k(k, len(y))
    seed_index = np.asarray(seed_index, dtype=np.int64)
    strength = np.ones(len(seed_index)) if strength is None else np.asarray(strength, dtype=np.float64)
    return _expand(emb, seed_index, y, groups, strength, k, min_sim, mode, seed_cap, exclude, index)


def _check_embeddings(embeddings: np.ndarray, n: int) -> np.ndarray:
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or len(emb) != n:
        raise HardmineError(f"embeddings have {len(emb)} rows but there are {n} labels")
    return emb


def _expand(emb, seed_index, y, groups, strength, k, min_sim, mode, seed_cap, exclude, index) -> Expansion:
    n = len(y)
    contribution = np.zeros(n)
    if len(seed_index) == 0:
        return Expansion(contribution, pd.DataFrame(columns=["seed", "neighbour", "similarity", "contribution"]))
    group_codes = None if groups is None else pd.factorize(np.asarray(groups))[0]
    extra = 0 if group_codes is None else int(np.bincount(group_codes).max())
    depth = min(n, k + extra + 1)
    if index is None:
        index = NeighbourIndex().build(emb)
    sims, nbrs = index.search(emb[seed_index], depth)
    excluded = np.zeros(n, dtype=bool) if exclude is None else np.asarray(exclude, dtype=bool)
    slots = _neighbour_slots(nbrs, seed_index, group_codes, k)
    safe = np.where(nbrs >= 0, nbrs, 0)
    ok = slots & (sims >= min_sim) & ~excluded[safe]
    if mode == "same-label":
        ok &= y[safe] == y[seed_index][:, None]
    elif mode == "opposite-label":
        ok &= y[safe] != y[seed_index][:, None]
    decay = np.where(ok, (sims - min_sim) / max(1 - min_sim, 1e-12), 0.0)
    total = decay.sum(axis=1, keepdims=True)
    decay *= np.where(total > seed_cap, seed_cap / np.maximum(total, 1e-12), 1.0)
    gift = strength[:, None] * decay
    rows, cols = np.nonzero(ok)
    np.add.at(contribution, nbrs[rows, cols], gift[rows, cols])
    pairs = pd.DataFrame(
        {
            "seed": seed_index[rows],
            "neighbour": nbrs[rows, cols],
            "similarity": sims[rows, cols],
            "contribution": gift[rows, cols],
        }
    )
    return Expansion(np.clip(contribution, 0, 1), pairs)


def _neighbour_slots(nbrs: np.ndarray, seed_index: np.ndarray, group_codes: np.ndarray | None, k: int) -> np.ndarray:
    """(S, K') bool: the first k neighbours of each seed (search results sorted by
    similarity), skipping the seed itself, missing results (-1), and all but the
    nearest image of the seed's own group, which therefore counts once."""
    keep = (nbrs >= 0) & (nbrs != seed_index[:, None])
    if group_codes is not None:
        same = keep & (group_codes[np.where(nbrs >= 0, nbrs, 0)] == group_codes[seed_index][:, None])
        first = np.argmax(same, axis=1)
        has_same = same.any(axis=1)
        keep &= ~same
        keep[np.flatnonzero(has_same), first[has_same]] = True
    return keep & (np.cumsum(keep, axis=1) <= k)


# --------------------------------------------------------------------------- mine


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
    config: MiningConfig | None = None,
    *,
    groups: np.ndarray | None = None,
    triage_prob: np.ndarray | None = None,
    dynamics: np.ndarray | None = None,
    hard_history: np.ndarray | None = None,
    previous_weights: np.ndarray | None = None,
    evidence: Evidence | None = None,
    oof_prob: np.ndarray | None = None,
    trusted: np.ndarray | None = None,
    index=None,
    forgetting: np.ndarray | None = None,
    cost_fn: float = 10.0,
    cost_fp: float = 1.0,
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
    dynamics : (N,) training-dynamics hardness for ``hardness="dynamics"``.
    hard_history : (R, N) bool, seeds of earlier rounds (for ``persistent``).
    previous_weights : (N,) last round's weights for the EMA.
    evidence : label-suspicion evidence (:mod:`hardmine.core.suspicion`) for ``quarantine="suspicion"``;
        gathered here from the embeddings, groups and dynamics when None.
    oof_prob : (N,) class-balanced P(positive) from networks trained out of fold, the gathered
        evidence's out-of-fold part (:func:`hardmine.core.evidence.gather_evidence`); ignored when
        ``evidence`` is given.
    trusted : (N,) bool, labels confirmed outside the model (histopathology): never quarantined,
        and free to be seeds or neighbours whatever their suspicion.
    forgetting : (N,) forgetting events recorded in training, for ``hardness="forgetting"``.
    cost_fn, cost_fp : what a missed positive and a false alarm cost (the run's threshold costs): missed
        positives rank ahead of other seeds by their ratio.
    seed : seed of the evidence's out-of-fold folds (the run's seed), when evidence is gathered here.
    """
    from hardmine.core import curriculum

    config = config or MiningConfig()
    config.validate()
    y, p = check_binary(labels, prob_pos)
    emb = _check_embeddings(embeddings, len(y))
    check_k(config.k, len(y))
    check_costs(cost_fn, cost_fp)
    tp = p if triage_prob is None else check_binary(y, triage_prob, prob_name="triage_prob")[1]
    if config.quarantine == "suspicion" and evidence is None:
        index = index or NeighbourIndex(codec=config.index_codec).build(emb)
        confidence = None if dynamics is None else 1 - np.asarray(dynamics, dtype=np.float64)
        evidence = gather_evidence(y, np.arange(len(y)) if groups is None else groups, emb, confidence=confidence,
                                   k=config.triage_k, seed=seed, index=index, oof_prob=oof_prob)  # fmt: skip
    if config.quarantine == "suspicion":
        suspects, why = _suspicion_triage(evidence, config.suspicion_threshold)
        # Doubtful labels (any reading of the evidence at the seed bar, short of quarantine) are not upweighted.
        unsafe = suspects | (evidence.doubt() >= config.seed_suspicion)
    else:
        suspects, why = _triage(y, tp, config.quarantine, hard_history, config.persistent_rounds)
        unsafe = suspects
    if trusted is not None:
        confirmed = np.asarray(trusted, dtype=bool)
        if confirmed.shape != y.shape:
            raise HardmineError(f"trusted has shape {confirmed.shape}; expected {y.shape}")
        suspects, unsafe = suspects & ~confirmed, unsafe & ~confirmed
        why = np.where(confirmed, "", why)
    selection = _select(y, p, threshold, config.hardness, config.band, config.max_frac,
                        cost_fn / cost_fp, unsafe, dynamics, forgetting)  # fmt: skip
    # A suspect is never upweighted: not a seed (select excluded it), not a neighbour, no boost carried over.
    quarantined = suspects
    seeds = selection.index
    if index is None and len(seeds):
        index = NeighbourIndex(codec=config.index_codec).build(emb)
    exclude = unsafe.copy()
    exclude[seeds] = True
    expansion = _expand(emb, seeds, y, groups, selection.hardness[seeds], config.k, config.min_sim, config.expand,
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


def _suspicion_triage(evidence: Evidence, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
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
