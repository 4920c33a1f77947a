"""Round strategies as plug-ins: how a mining round turns the curriculum into a model.

Each strategy is one class in its own file, named in :data:`STRATEGIES` (a
static registry, the way timm maps model names to factories). Everything that
offers or checks a strategy reads the registry: the CLI's ``--strategy``
choices, :func:`check_rounds` (run by :func:`hardmine.run.opened.validate`), the
epoch budgets (:func:`epochs_per_round`, :func:`total_epochs`,
:func:`reference_epochs`), the round loop, the report and ``hardmine compare``.
A strategy needs no torch and no run folder: the round loop hands it a
:class:`RoundContext` to train or refit through, and it reads the run's
configuration, so this floor sits right above the record.

Adding one: write ``hardmine/strategies/<name>.py`` with a :class:`Strategy`
subclass and add one line to :data:`STRATEGIES`.

:data:`UPDATES` is the second family on this floor: how an active-learning step
turns the labeled set as it stands (every answer so far) into the next model
(``--update``). An update mode builds a step through the same
:class:`RoundContext` and protocol, its ``weights`` None unless the step takes
the mining curriculum (``--step-curriculum``); the three modes are today the
three strategies' classes, and a mode of its own is one more file and line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hardmine.core.errors import HardmineError
from hardmine.strategies.base import RoundContext, Strategy
from hardmine.strategies.finetune import Finetune
from hardmine.strategies.head import Head
from hardmine.strategies.retrain import Retrain

if TYPE_CHECKING:
    from hardmine.record.config import RoundsConfig

__all__ = ["STRATEGIES", "UPDATES", "RoundContext", "Strategy", "check_rounds", "epochs_per_round", "get_strategy",
           "get_update", "reference_epochs", "total_epochs"]  # fmt: skip

STRATEGIES: dict[str, type[Strategy]] = {
    "finetune": Finetune,
    "retrain": Retrain,
    "head": Head,
}

# how an active-learning step updates the model on every answer so far: continue from the previous step's
# model (a quarter of round 0's epochs, lr / 3), train afresh from the initial weights, or refit round 0's
# last layer on its frozen backbone
UPDATES: dict[str, type[Strategy]] = {
    "finetune": Finetune,
    "retrain": Retrain,
    "head": Head,
}


def get_update(name: str) -> Strategy:
    """The update mode registered as ``name``; :class:`HardmineError` naming the valid choices otherwise."""
    if name not in UPDATES:
        raise HardmineError(f"--update {name!r} is not valid; expected one of {', '.join(UPDATES)}")
    return UPDATES[name]()


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``; :class:`HardmineError` naming the valid choices otherwise."""
    if name not in STRATEGIES:
        raise HardmineError(f"--strategy {name!r} is not valid; expected one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]()


def check_rounds(rounds: RoundsConfig) -> None:
    """Raise :class:`HardmineError` naming a ``--strategy`` or ``--update`` that no registry holds."""
    get_strategy(rounds.strategy)
    if rounds.update is not None:
        get_update(rounds.update)


def epochs_per_round(rounds: RoundsConfig, train_epochs: int) -> int:
    """Training epochs of each mining round: the strategy's budget given round 0's ``train_epochs``."""
    return get_strategy(rounds.strategy).epochs_per_round(rounds, train_epochs)


def total_epochs(rounds: RoundsConfig, train_epochs: int, n_rounds: int) -> int:
    """Epochs round 0 and ``n_rounds`` mining rounds train together (the run's budget)."""
    return train_epochs + n_rounds * epochs_per_round(rounds, train_epochs)


def reference_epochs(rounds: RoundsConfig, train_epochs: int, n_rounds: int) -> int | None:
    """Epochs of the equal-epochs reference (round 0's recipe trained for the whole budget) of a run aiming at
    round ``n_rounds``; None when round 0 is its own reference (no mining round, or rounds that train no
    epochs, i.e. head refits) or ``rounds.reference`` is off."""
    total = total_epochs(rounds, train_epochs, n_rounds)
    return total if rounds.reference and total > train_epochs else None
