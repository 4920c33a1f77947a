"""The options of a mining step (:class:`MiningConfig`) and the checks its parts share."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from hardmine.core.errors import HardmineError
from hardmine.core.index import check_codec
from hardmine.core.scores import HARDNESS
from hardmine.core.suspicion import DEFAULT_SEED_SUSPICION

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
    # quarantined nor kept from seeding by suspicion; "" (or "none") trusts none; None: the data source's
    # own rule, which a run resolves (RunConfig: HAM10000 trusts dx_type=histo)
    trusted: str | None = None

    def __post_init__(self) -> None:
        if self.trusted is not None and self.trusted.strip().lower() == "none":
            self.trusted = ""

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



def check_k(k: int, n: int) -> None:
    """k neighbours need more than k samples."""
    if k >= n:
        raise HardmineError(f"k={k} neighbours asked for but only {n} samples (k must be < N)")


def check_embeddings(embeddings: np.ndarray, n: int) -> np.ndarray:
    """(N, D) embeddings of the ``n`` labelled samples, as an array; anything else raises :class:`HardmineError`."""
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or len(emb) != n:
        raise HardmineError(f"embeddings have {len(emb)} rows but there are {n} labels")
    return emb
