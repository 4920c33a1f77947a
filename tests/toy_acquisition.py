"""A toy acquisition function with an option of its own, whole in one file: the likeliest positives above a
floor of P(positive), the rest of the batch left unasked. Registering it is one line:
``ACQUISITION["above"] = above``; ``acquire(..., floor=0.8)`` or ``--method-option floor=0.8`` sets the option."""

import numpy as np

from hardmine.core.errors import HardmineError
from hardmine.core.picking import Picks, Pool


def above(pool: Pool, budget: int, *, floor: float = 0.5) -> Picks:
    """Pool images with P(positive) >= ``floor``, likeliest first (the batch may come back short)."""
    if not 0 <= floor <= 1:
        raise HardmineError(f"above: floor={floor} must be a probability in [0, 1]")
    order = np.argsort(-pool.prob_pos, kind="stable")
    order = order[pool.prob_pos[order] >= floor][:budget]
    return order, [f"P(pos) {pool.prob_pos[i]:.2f} above the floor {floor:.2f}" for i in order]
