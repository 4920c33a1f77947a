"""Hard-example mining, numpy in and numpy out: seeds, triage, neighbour expansion.

Score direction: every hardness score here is higher = harder.

1. :func:`select` (``seeds``) takes the misclassified samples (at the round's decision
   threshold) and the low-margin ones (within ``band`` log-odds of the
   threshold), ranks them by a hardness score, and keeps per-class quotas;
   missed positives rank first by the cost ratio.
2. :func:`triage` (``suspects``) flags suspected label errors (confident learning's
   per-class thresholds on, ideally out-of-fold, probabilities; or hard in
   every one of the last rounds). They are quarantined: not upweighted, not
   expanded, listed for review.
3. :func:`expand` (``neighbours``) spreads each seed's attention to its k nearest neighbours in
   embedding space, decaying with similarity, capped per seed; other images of
   the seed's own lesion count once.

:func:`mine` (``step``) runs all three and returns a :class:`MiningResult` whose
:meth:`MiningResult.frame` is the ``mined.csv`` table.
"""

from hardmine.core.mining.config import (
    EXPAND,
    HARDNESS,
    QUARANTINE,
    QUARANTINE_WARN_SHARE,
    ROLES,
    MiningConfig,
    check_k,
)
from hardmine.core.mining.neighbours import Expansion, expand
from hardmine.core.mining.seeds import Selection, rank01, select
from hardmine.core.mining.step import MiningResult, mine
from hardmine.core.mining.suspects import triage

__all__ = ["EXPAND", "HARDNESS", "QUARANTINE", "QUARANTINE_WARN_SHARE", "ROLES", "Expansion", "MiningConfig",
           "MiningResult", "Selection", "check_k", "expand", "mine", "rank01", "select", "triage"]
