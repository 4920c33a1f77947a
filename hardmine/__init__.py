"""hardmine: hard-example mining for imbalanced image classification."""

__version__ = "0.1.0"
