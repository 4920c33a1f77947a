"""A toy hardness signal, whole in one file: the images whose p(true label) swung most across training epochs
rank hardest (dataset cartography's ``variability``, which the score step writes when training dynamics
are recorded). Registering it is one line: ``HARDNESS["swing"] = swing``."""

import numpy as np

from hardmine.core.scores import Signals


def swing(p_true: np.ndarray, signals: Signals) -> np.ndarray:
    """(N,) standard deviation of p(true label) over the training epochs, higher = harder."""
    return signals.need("variability", len(p_true))
