"""``finetune``: continue from the previous round on the curriculum, at a lower learning rate."""

from __future__ import annotations

from dataclasses import replace

from hardmine.strategies.base import Metrics, RoundContext, Strategy


class Finetune(Strategy):
    name = "finetune"
    description = "continue from the previous round on the curriculum (a quarter of round 0's epochs, lr / 3)"

    def epochs_per_round(self, rounds, train_epochs: int) -> int:
        return rounds.round_epochs or max(1, train_epochs // 4)

    def train_config(self, config, *, weighted: bool = True):
        train = super().train_config(config, weighted=weighted)
        return replace(train, freeze_epochs=0, lr=config.rounds.round_lr or config.train.lr / 3)

    def build_round(self, ctx: RoundContext) -> tuple[Metrics, int | None]:
        train = self.train_config(ctx.config, weighted=ctx.weights is not None)
        metrics = ctx.train(train, sample_weights=ctx.weights, init_checkpoint=ctx.model_path(ctx.previous))
        return metrics, ctx.previous
