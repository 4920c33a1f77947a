"""Round strategies as plug-ins: how a mining round turns the curriculum into a model.

Each strategy is one class in its own file, named in :data:`STRATEGIES` (a
static registry, the way timm maps model names to factories). Everything that
offers or checks a strategy reads the registry: the CLI's ``--strategy``
choices, :meth:`~hardmine.record.config.RoundsConfig.validate`, the round loop,
the report and ``hardmine compare``. A strategy needs no torch and no run
folder: the round loop hands it a :class:`RoundContext` to train or refit
through, so this floor sits right above the numpy core.

Adding one: write ``hardmine/strategies/<name>.py`` with a :class:`Strategy`
subclass and add one line to :data:`STRATEGIES`.
"""

from __future__ import annotations

from hardmine.core.errors import HardmineError
from hardmine.strategies.base import RoundContext, Strategy
from hardmine.strategies.finetune import Finetune
from hardmine.strategies.head import Head
from hardmine.strategies.retrain import Retrain

__all__ = ["STRATEGIES", "RoundContext", "Strategy", "get_strategy"]

STRATEGIES: dict[str, type[Strategy]] = {
    "finetune": Finetune,
    "retrain": Retrain,
    "head": Head,
}


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``; :class:`HardmineError` naming the valid choices otherwise."""
    if name not in STRATEGIES:
        raise HardmineError(f"--strategy {name!r} is not valid; expected one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]()
