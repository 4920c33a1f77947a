"""PyTorch Lightning: mine at the end of training epochs, draw the next ones by the curriculum.

>>> miner = HardMiner(train_labels, groups=lesion_ids)                  # doctest: +SKIP
>>> train_loader = DataLoader(train_ds, sampler=miner.sampler(), batch_size=64)
>>> score_loader = DataLoader(train_ds_without_augmentation, batch_size=256)
>>> trainer = Trainer(max_epochs=20, callbacks=[HardMiningCallback(miner, score_loader, every_n_epochs=5)],
...                   use_distributed_sampler=False)                    # the sampler is DDP-aware itself
>>> trainer.fit(module, train_loader)

Every ``every_n_epochs`` epochs (from ``start_epoch``), rank 0 scores the
training set with the module (its ``forward`` returns logits, or ``(logits,
embedding)``), mines, and broadcasts the new weights to every rank; the shared
:class:`~hardmine.engine.sampler.CurriculumSampler` draws the following epochs by
them, so every rank samples the same, disjoint, reweighted sequence.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from hardmine.core.errors import HardmineError
from hardmine.engine.miner import HardMiner
from hardmine.integrations import mining_due, mining_summary


class HardMiningCallback(pl.Callback):
    """Mine with ``miner`` every ``every_n_epochs`` training epochs, from epoch ``start_epoch`` (1-based).

    Parameters
    ----------
    miner : the :class:`HardMiner` whose ``sampler()`` the training DataLoader draws with.
    score_loader : the training set in dataset order without augmentation (or yielding indices).
    every_n_epochs, start_epoch : mine after epochs ``start_epoch, start_epoch + every_n_epochs, ...``.
    positive_class : logit column of the positive class when the module returns ``(B, C>2)`` logits.
    """

    def __init__(self, miner: HardMiner, score_loader, every_n_epochs: int = 1, start_epoch: int | None = None,
                 positive_class: int | None = None):  # fmt: skip
        if every_n_epochs < 1:
            raise HardmineError(f"every_n_epochs must be at least 1; got {every_n_epochs}")
        self.miner = miner
        self.score_loader = score_loader
        self.every_n_epochs = int(every_n_epochs)
        self.start_epoch = int(start_epoch if start_epoch is not None else every_n_epochs)
        self.positive_class = positive_class
        self.history: list[dict[str, Any]] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        if sampler is not self.miner.sampler():
            raise HardmineError(
                "the training DataLoader does not draw with miner.sampler(): build it with "
                "DataLoader(dataset, sampler=miner.sampler(), ...) and, under DDP, Trainer(use_distributed_sampler="
                "False) (the curriculum sampler splits the draws across ranks itself)"
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        done = trainer.current_epoch + 1
        if not mining_due(done, self.start_epoch, self.every_n_epochs):
            return
        mined = None
        if trainer.is_global_zero:
            result = self.miner.score(pl_module, self.score_loader, device=pl_module.device,
                                      positive_class=self.positive_class)  # fmt: skip
            mined = (self.miner.weights, mining_summary(done, result))
        weights, summary = trainer.strategy.broadcast(mined, src=0)
        if not trainer.is_global_zero:
            self.miner.use_weights(weights)
        self.history.append(summary)
        pl_module.log_dict({f"hardmine/{k}": float(v) for k, v in summary.items() if k != "epoch"},
                           rank_zero_only=True)  # fmt: skip
