"""How long a run will take on this machine, said before it trains (a CPU makes a pretrained backbone slow).

The cost of one image is measured, not guessed: a few batches of random
images at the run's size through its model (forward and backward for
training, forward only for inference), after one warm-up. The run's work is
then counted in images: every training epoch over the training split, the
validation pass after each epoch, and the scoring passes of each round (one in
all for a frozen backbone, whose embeddings are remembered). Image decoding is
left out, so a run on large JPEGs takes somewhat longer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hardmine.record.config import RunConfig
from hardmine.strategies import epochs_per_round, reference_epochs


@dataclass(frozen=True)
class Estimate:
    """Seconds a run of ``rounds`` mining rounds is expected to take, and what one image costs."""

    seconds: float
    train_image_s: float  # one training image, forward and backward
    infer_image_s: float  # one image through the model, no gradients
    rounds: int


def image_costs(config: RunConfig, batch: int = 8, repeats: int = 2) -> tuple[float, float]:
    """Seconds per image of training and of inference for ``config``'s model and image size, measured on
    random images in batches of ``batch``."""
    import torch

    from hardmine.engine.models import build_model
    from hardmine.engine.runtime import Engine

    engine = Engine(config.train)
    # built directly, not through the engine: a frozen run's memo would serve the repeats from memory
    model = build_model(config.train.model, config.train.weights).to(engine.device)
    size = config.train.image_size
    images = torch.randn(batch, 3, size, size, device=engine.device)
    labels = torch.zeros(batch, dtype=torch.long, device=engine.device)

    def timed(step) -> float:
        step()  # warm-up: first calls allocate and pick kernels
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        return (time.perf_counter() - start) / (repeats * batch)

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images)[0], labels).backward()

    model.train()
    train_s = timed(train_step)
    model.eval()
    with torch.no_grad():
        infer_s = timed(lambda: model(images))
    return train_s, infer_s


def estimate_run(
    config: RunConfig, split_sizes: dict[str, int], rounds: int, costs: tuple[float, float] | None = None
) -> Estimate:
    """The expected time of round 0 and ``rounds`` mining rounds of ``config`` on splits of ``split_sizes``
    (train, val, test image counts), from ``costs`` (seconds per training and per scored image; measured
    by :func:`image_costs` when None)."""
    train_s, infer_s = costs or image_costs(config)
    n_train, n_val, n_test = (split_sizes.get(name, 0) for name in ("train", "val", "test"))
    train = config.train
    round0_epochs = 0 if train.frozen else train.epochs + train.freeze_epochs
    epochs = round0_epochs + rounds * epochs_per_round(config.rounds, train.epochs)
    reference = reference_epochs(config.rounds, train.epochs, rounds) or 0
    trained = (epochs + reference) * n_train
    # a validation pass each epoch; each round scores train and val once; the report scores test; a frozen
    # backbone embeds each image once (hardmine.engine.feature_memo)
    passes = 1 if train.frozen else rounds + 1
    inferred = (epochs + reference) * n_val + passes * (n_train + n_val) + n_test
    return Estimate(trained * train_s + inferred * infer_s, train_s, infer_s, rounds)


def duration_text(seconds: float) -> str:
    """``seconds`` rounded for a person: "40 s", "12 min", "2 h 10 min"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d} min"
