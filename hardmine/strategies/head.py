"""``head``: keep round 0's backbone, refit the last layer on cached embeddings (DFR-like)."""

from __future__ import annotations

from hardmine.strategies.base import Metrics, RoundContext, Strategy


class Head(Strategy):
    name = "head"
    description = "keep round 0's backbone, refit its last layer on the curriculum (DFR-like; no epochs)"

    def epochs_per_round(self, rounds, train_epochs: int) -> int:
        return 0  # seconds of logistic regression on cached embeddings

    def build_round(self, ctx: RoundContext) -> tuple[Metrics, int | None]:
        return ctx.refit_head(0, sample_weights=ctx.weights), 0

    def init_text(self, init_round: int | None) -> str:
        return f"head r{init_round or 0}"
