"""The strategy protocol and what the round loop hands a strategy to build a round with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # types only: a strategy imports no configuration module at run time
    from hardmine.record.config import RoundsConfig, RunConfig, TrainConfig

Metrics = dict[str, Any]


@dataclass
class RoundContext:
    """What building mining round ``round`` may use; the round loop (:mod:`hardmine.run.rounds`) makes it.

    Attributes
    ----------
    round : the round being built (>= 1).
    config : the run's configuration.
    weights : (N,) curriculum weights of the training split mined from round ``round - 1``; None for an
        active-learning step without the curriculum (every label counts once, round 0's sampling).
    previous : the round to continue from: ``round - 1``, or the best round so far when ``round - 1``
        made validation worse by more than ``guard_tol``.
    model_path : the model file of a completed round.
    train : ``train(train_config, sample_weights=, init_checkpoint=)`` trains this round (from
        ``init_checkpoint``, else fresh weights) and returns its validation metrics.
    refit_head : ``refit_head(backbone_round, sample_weights=)`` keeps a round's backbone and refits its
        last layer on the curriculum; returns the validation metrics.
    """

    round: int
    config: RunConfig
    weights: np.ndarray | None
    previous: int
    model_path: Callable[[int], Path]
    train: Callable[..., Metrics]
    refit_head: Callable[..., Metrics]


class Strategy:
    """How mining rounds train: their epoch budget, their training configuration, how one is built.

    Subclasses set :attr:`name` and :attr:`description` and override :meth:`epochs_per_round` and
    :meth:`build_round`; :meth:`train_config` and :meth:`init_text` have defaults.
    """

    name: str = ""
    description: str = ""

    def epochs_per_round(self, rounds: RoundsConfig, train_epochs: int) -> int:
        """Training epochs of each mining round, given round 0's ``train_epochs`` (0: no epochs trained)."""
        raise NotImplementedError

    def train_config(self, config: RunConfig, *, weighted: bool = True) -> TrainConfig:
        """How a round trains: round 0's recipe for :meth:`epochs_per_round` epochs; curriculum weights
        (``weighted``) replace oversampling when they carry the class balance (both would square it), and an
        unweighted round (an active-learning step on its labels as they stand) keeps round 0's sampling."""
        train = replace(config.train, epochs=self.epochs_per_round(config.rounds, config.train.epochs))
        return replace(train, sampling="none") if weighted and config.mining.balance else train

    def build_round(self, ctx: RoundContext) -> tuple[Metrics, int | None]:
        """Train round ``ctx.round``; returns its validation metrics and the round it started from (None: fresh
        weights)."""
        raise NotImplementedError

    def init_text(self, init_round: int | None) -> str:
        """Where a round of this strategy started, for the round table: ``rN`` or ``scratch``."""
        return "scratch" if init_round is None else f"r{init_round}"

