"""``retrain``: a fresh model on the curriculum, round 0's recipe (JTT-like)."""

from __future__ import annotations

from hardmine.strategies.base import Metrics, RoundContext, Strategy


class Retrain(Strategy):
    name = "retrain"
    description = "train a fresh model on the curriculum, as many epochs as round 0 (JTT-like)"

    def epochs_per_round(self, rounds, train_epochs: int) -> int:
        # JTT identifies errors with a short round 0 and retrains for longer: round_epochs overrides
        return rounds.round_epochs or train_epochs

    def build_round(self, ctx: RoundContext) -> tuple[Metrics, int | None]:
        return ctx.train(self.train_config(ctx.config, weighted=ctx.weights is not None),
                         sample_weights=ctx.weights), None
