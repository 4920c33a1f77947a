"""Thin callbacks over :class:`hardmine.HardMiner` for training frameworks (optional extras).

* :mod:`hardmine.integrations.lightning` (extra ``[lightning]``): ``HardMiningCallback`` for PyTorch Lightning.
* :mod:`hardmine.integrations.fastai` (extra ``[fastai]``): ``HardMiningCallback`` for a fastai ``Learner``.

Neither is imported by the core; each imports its framework when imported itself.
"""
