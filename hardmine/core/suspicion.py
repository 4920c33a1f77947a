"""Label suspicion: how likely each training label is wrong, from evidence the mined model did not fit.

A flipped label is exactly what a model gets "most wrong", so mining must not
trust the in-sample probabilities of the model being mined to tell a label
error from a hard case. The pieces of out-of-sample evidence, each turned
into a *class-balanced* probability that the given label is wrong (so that
the minority class is not suspect merely for being rare), are plug-ins in
:data:`hardmine.core.evidence.EVIDENCE`; the built-in ones:

* ``oof``: a linear head refitted out of fold (grouped folds: no lesion in
  two folds) on the round's embeddings, class-balanced L2 logistic regression;
  seconds on a CPU, and a linear head cannot memorise a flipped image the way
  the network did (cleanlab's and SELF's out-of-sample idea at head cost).
  When whole networks were trained out of fold (``--triage networks``), their
  probabilities replace the head's: their backbones never saw the image
  either, which the round's embeddings cannot claim (piece ``networks``).
* ``neighbours``: the labels of the nearest images from *other* lesions in
  embedding space, each class's count divided by its prior; other images of
  the same lesion are left out since they carry the same (possibly wrong) label.
* ``dynamics`` (when recorded): 1 - the mean probability of the given label
  over training epochs; low confidence with low variability is the
  label-error signature (dataset cartography), high variability the hard one.

:meth:`Evidence.score` is the documented score (higher = more suspect, in
[0, 1]). With the out-of-fold *head* it is the mean of the available evidence;
with out-of-fold *networks* it is their evidence alone: the neighbours and the
dynamics come from the mined model's backbone, which saw (and, given epochs,
memorised) the flipped label, and averaging them in diluted the networks'
evidence (flip AUROC on the digits benchmark 0.98 alone, 0.93 averaged).
:func:`suspects` applies the default rule, measured in
``benchmarks/bench_triage.py``: suspect when the suspicion reaches
:func:`default_threshold` (0.7 with the head, 0.8 with networks, whose evidence
is sharper). Mining quarantines the suspects, and upweights nothing whose
:meth:`Evidence.doubt` (the larger of the suspicion and the mean of all the
evidence) reaches 0.55: a seed must look clean to every reading of the
evidence, and a doubtful label keeps its base weight without being listed for
review. Requiring the out-of-fold head and the neighbours to agree before a
quarantine was tried: it lost flips into the minority class, whose few
minority-class neighbours weigh heavily once counts are divided by the class
prior. Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hardmine.core.errors import HardmineError

DEFAULT_THRESHOLD = 0.7  # quarantine, evidence from the out-of-fold head (measured: benchmarks/bench_triage.py)
NETWORKS_THRESHOLD = 0.8  # quarantine, evidence from networks trained out of fold (same benchmark, --oof-epochs)
DEFAULT_SEED_SUSPICION = 0.55  # a seed or neighbour must have less doubt than this


# the neighbour vote's counts keep the scores.csv column names they had before pieces could add their own
_DETAIL_COLUMNS = {"neighbours_other": "neighbours_other_label", "neighbours_seen": "neighbours_seen"}


@dataclass
class Evidence:
    """Per-sample evidence that the given label is wrong.

    ``parts`` maps each piece's name in :data:`hardmine.core.evidence.EVIDENCE` (``oof``: the out-of-fold
    head; ``networks``: networks trained out of fold; ``neighbours``; ``dynamics``) to an (N,) P(the given
    label is wrong) in [0, 1], in registry order; a piece that could not be gathered is absent.
    ``details`` holds the (N,) counts pieces keep beside them, by name: the neighbour vote's
    ``neighbours_other`` / ``neighbours_seen`` (how many of the other-lesion neighbours carry the other
    label, and how many were found; the quarantine reason and the gallery show them), and any a new
    piece adds.
    """

    parts: dict[str, np.ndarray]
    details: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def neighbours_other(self) -> np.ndarray | None:
        return self.details.get("neighbours_other")

    @property
    def neighbours_seen(self) -> np.ndarray | None:
        return self.details.get("neighbours_seen")

    @classmethod
    def of(cls, oof: np.ndarray, neighbours: np.ndarray, dynamics: np.ndarray | None = None,
           neighbours_other: np.ndarray | None = None, neighbours_seen: np.ndarray | None = None,
           networks: bool = False) -> Evidence:  # fmt: skip
        """The built-in pieces by position: ``oof`` is the networks' evidence when ``networks``, else the head's."""
        parts = {"networks" if networks else "oof": oof, "neighbours": neighbours}
        if dynamics is not None:
            parts["dynamics"] = dynamics
        counts = {"neighbours_other": neighbours_other, "neighbours_seen": neighbours_seen}
        return cls(parts, {name: values for name, values in counts.items() if values is not None})

    @property
    def networks(self) -> bool:
        """Whether the out-of-fold evidence comes from networks trained out of fold (not the out-of-fold head)."""
        return "networks" in self.parts

    @property
    def oof(self) -> np.ndarray | None:
        """The out-of-fold piece: the networks' when there is one, else the out-of-fold head's."""
        return self.parts.get("networks", self.parts.get("oof"))

    @property
    def neighbours(self) -> np.ndarray | None:
        return self.parts.get("neighbours")

    @property
    def dynamics(self) -> np.ndarray | None:
        return self.parts.get("dynamics")

    def columns(self) -> dict[str, np.ndarray]:
        """The evidence as ``scores.csv`` columns: ``suspicion`` and ``suspicion_<piece>`` for each piece, and
        each count in ``details`` (the neighbour vote's as ``neighbours_other_label`` and ``neighbours_seen``,
        any other as ``detail_<name>``)."""
        cols = {"suspicion": self.score(), **{f"suspicion_{name}": value for name, value in self.parts.items()}}
        return cols | {_DETAIL_COLUMNS.get(name, f"detail_{name}"): values for name, values in self.details.items()}

    @classmethod
    def from_columns(cls, frame) -> Evidence | None:
        """Rebuild from ``scores.csv`` columns written by :meth:`columns` (None when it holds no out-of-fold piece)."""
        if "suspicion_networks" not in frame and "suspicion_oof" not in frame:
            return None
        names = [column.removeprefix("suspicion_") for column in frame.columns if column.startswith("suspicion_")]
        columns = _DETAIL_COLUMNS | {c.removeprefix("detail_"): c for c in frame.columns if c.startswith("detail_")}
        return cls({name: frame[f"suspicion_{name}"].to_numpy() for name in names},
                   {name: frame[column].to_numpy() for name, column in columns.items() if column in frame})

    def mean(self) -> np.ndarray:
        """(N,) the mean of the available evidence."""
        return np.mean(list(self.parts.values()), axis=0)

    def score(self) -> np.ndarray:
        """The label-suspicion score, (N,) in [0, 1], higher = more suspect: the out-of-fold networks'
        evidence when there is some (``networks``), else the mean of the available evidence."""
        return np.asarray(self.parts["networks"], dtype=np.float64) if self.networks else self.mean()

    def doubt(self) -> np.ndarray:
        """(N,) the larger of :meth:`score` and :meth:`mean`: what a seed or neighbour must stay below."""
        return np.maximum(self.score(), self.mean())


def at_prior(prob_pos: np.ndarray, trained_prior: float, prior: float) -> np.ndarray:
    """(N,) P(positive) of a model trained at positive share ``trained_prior`` (0.5 when classes were
    balanced by oversampling or weights), re-expressed at positive share ``prior`` (Bayes' rule on
    the odds: only the prior changes, the likelihood ratio is kept)."""
    for name, value in (("trained_prior", trained_prior), ("prior", prior)):
        if not 0 < value < 1:
            raise HardmineError(f"{name} {value} must be in (0, 1)")
    p = np.clip(np.asarray(prob_pos, dtype=np.float64), 1e-9, 1 - 1e-9)
    odds = p / (1 - p) * (prior / (1 - prior)) / (trained_prior / (1 - trained_prior))
    return odds / (1 + odds)


def default_threshold(evidence: Evidence) -> float:
    """The measured quarantine threshold for this evidence: 0.8 from out-of-fold networks, else 0.7."""
    return NETWORKS_THRESHOLD if evidence.networks else DEFAULT_THRESHOLD


def suspects(evidence: Evidence, threshold: float | None = None) -> np.ndarray:
    """(N,) bool: the default rule, suspicion >= ``threshold`` (:func:`default_threshold` when None)."""
    threshold = default_threshold(evidence) if threshold is None else threshold
    if not 0 < threshold <= 1:
        raise HardmineError(f"suspicion threshold {threshold} must be in (0, 1]")
    return evidence.score() >= threshold
