"""hardmine: hard-example mining for imbalanced image classification.

The public entry points are imported lazily so that ``import hardmine`` (and
torch-free modules such as the gallery) do not pull in torch.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["HardMiner", "MiningConfig", "CurriculumSampler", "__version__"]

_LAZY = {
    "HardMiner": "hardmine.engine.miner",
    "MiningConfig": "hardmine.core.mining",
    "CurriculumSampler": "hardmine.engine.sampler",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hardmine' has no attribute {name!r}")
