"""Last-layer refits on cached embeddings (the ``head`` round strategy), numpy and scikit-learn.

Deep feature reweighting (Kirichenko et al. 2023) and SELF (LaBonte et al.
2023) keep the backbone and refit only the last layer as a regularised
logistic regression on reweighted data: seconds on a CPU, and it moves the
decision boundary where the imbalance put it. :func:`fit_head` fits an L2
logistic regression on standardised embeddings with per-sample weights (the
mined curriculum: class balance x hardness x neighbours), one fit per
inverse-regularisation strength ``C``, and keeps the ``C`` whose head scores
best on validation by the caller's objective (never on test). The result is
folded back into an ``nn.Linear``-shaped pair ``(weight (2, D), bias (2,))``
so the refitted model is an ordinary checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from hardmine.core.errors import HardmineError
from hardmine.core.metrics import check_binary

C_GRID = (0.01, 0.1, 1.0)


@dataclass
class HeadFit:
    """A refitted two-class linear head.

    weight : (2, D) and bias : (2,), for ``logits = embedding @ weight.T + bias``
    (class 1 = positive). ``C`` is the chosen strength, ``scores`` the validation
    objective of every ``C`` tried (higher = better).
    """

    weight: np.ndarray
    bias: np.ndarray
    C: float
    scores: dict[float, float]

    def prob_pos(self, embeddings: np.ndarray) -> np.ndarray:
        """(N,) P(positive) of raw (N, D) embeddings."""
        logits = np.asarray(embeddings, dtype=np.float64) @ self.weight.T + self.bias
        return expit(logits[:, 1] - logits[:, 0])


def fit_head(
    train_embeddings: np.ndarray,
    train_labels: np.ndarray,
    val_embeddings: np.ndarray,
    val_labels: np.ndarray,
    objective: Callable[[np.ndarray, np.ndarray], float],
    *,
    sample_weight: np.ndarray | None = None,
    c_grid: Sequence[float] = C_GRID,
    max_iter: int = 2000,
) -> HeadFit:
    """Refit a linear head on raw embeddings; choose ``C`` on validation.

    Parameters
    ----------
    train_embeddings : (N, D) raw embeddings (the input of the model's last layer).
    train_labels : (N,) 0/1.
    val_embeddings, val_labels : (M, D) and (M,) for choosing ``C``.
    objective : ``objective(val_labels, val_prob_pos) -> float``, higher = better
        (e.g. sensitivity at 90% specificity); ties go to the stronger regularisation.
    sample_weight : (N,) non-negative weights (the curriculum); default: class-balanced.
    c_grid : inverse regularisation strengths to try.

    Returns
    -------
    :class:`HeadFit`; deterministic for the same inputs.
    """
    from sklearn.linear_model import LogisticRegression

    y, _ = check_binary(train_labels, label_name="train_labels")
    val_y, _ = check_binary(val_labels, label_name="val_labels")
    x = np.asarray(train_embeddings, dtype=np.float64)
    val_x = np.asarray(val_embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y) or val_x.ndim != 2 or len(val_x) != len(val_y) or x.shape[1] != val_x.shape[1]:
        raise HardmineError(
            f"embeddings {x.shape} / {val_x.shape} do not match labels ({len(y)}) / ({len(val_y)}) or each other"
        )
    if len(np.unique(y)) < 2 or len(np.unique(val_y)) < 2:
        raise HardmineError("a head refit needs both classes in the training and the validation data")
    if sample_weight is None:
        sample_weight = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != y.shape or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise HardmineError(f"sample_weight must be {y.shape} finite non-negative values, not all zero")
    if not c_grid or any(c <= 0 for c in c_grid):
        raise HardmineError(f"c_grid {list(c_grid)} must hold positive values")
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z, val_z = (x - mean) / std, (val_x - mean) / std
    fits, scores = {}, {}
    for c in sorted(c_grid):
        model = LogisticRegression(C=c, max_iter=max_iter)
        model.fit(z, y, sample_weight=w / w.mean())
        coef, intercept = model.coef_[0], float(model.intercept_[0])
        fits[c] = (coef, intercept)
        scores[c] = float(objective(val_y, expit(val_z @ coef + intercept)))  # expit: no overflow at large logits
    best = max(sorted(c_grid), key=lambda c: (scores[c], -c))
    coef, intercept = fits[best]
    # Fold the standardisation in: logit = ((x - mean) / std) @ coef + b = x @ (coef / std) + (b - mean @ (coef / std)).
    direction = coef / std
    offset = intercept - float(mean @ direction)
    weight = np.stack([-direction / 2, direction / 2])
    bias = np.array([-offset / 2, offset / 2])
    return HeadFit(weight, bias, float(best), scores)
