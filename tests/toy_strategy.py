"""``polish``: one epoch from the previous round at a tenth of the learning rate (a toy strategy plug-in)."""

from dataclasses import replace

from hardmine.strategies.base import Strategy


class Polish(Strategy):
    name = "polish"
    description = "one epoch from the previous round at lr / 10"

    def epochs_per_round(self, rounds, train_epochs):
        return 1

    def train_config(self, config):
        return replace(super().train_config(config), lr=config.train.lr / 10)

    def build_round(self, ctx):
        init = ctx.model_path(ctx.previous)
        return ctx.train(self.train_config(ctx.config), sample_weights=ctx.weights, init_checkpoint=init), ctx.previous
