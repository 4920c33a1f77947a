"""The engine of a run: its training configuration turned into datasets, models and one ``predict``.

Every step that needs torch goes through an :class:`Engine`: it builds the
image dataset of a sample table (a split of a run, or any table of image
paths), builds or loads the model, and runs inference with the run's batch
size, device, precision and loader workers, spelled here once.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from hardmine.engine import distributed
from hardmine.engine.datasets import ImageDataset
from hardmine.engine.inference import Callback, predict, resolve_device
from hardmine.engine.models import build_model, load_weights
from hardmine.record.config import TrainConfig


class Engine:
    """Datasets, models and inference for one training configuration.

    Parameters
    ----------
    config : the run's (or round's) :class:`~hardmine.record.config.TrainConfig`.
    device : overrides ``config.device`` (``auto``, ``cpu``, ``cuda:N``...); under torchrun each rank
        takes its own GPU.
    """

    def __init__(self, config: TrainConfig, device: str | None = None):
        self.config = config
        self.device_name = device or config.device

    @property
    def device(self):
        return resolve_device(distributed.local_device(self.device_name))

    def dataset(self, table: pd.DataFrame, *, train: bool = False) -> ImageDataset:
        """The image dataset of ``table`` (``path, label`` columns): ``dataset[i] = (image, label, i)``,
        augmented when ``train``."""
        cfg = self.config
        return ImageDataset(table, cfg.image_size, train=train, augment=cfg.augment)

    def build_model(self, seed_offset: int = 0):
        """A new model of the configured architecture and starting weights, seeded ``seed + seed_offset``."""
        cfg = self.config
        return build_model(cfg.model, cfg.weights, seed=cfg.seed + seed_offset)

    def load_model(self, checkpoint: str | os.PathLike):
        """The configured architecture with the state dict at ``checkpoint`` (read with ``weights_only=True``)."""
        model = build_model(self.config.model, "none")
        load_weights(model, checkpoint)
        return model

    def predict(
        self, model, data: ImageDataset | pd.DataFrame, *, tta: bool = False, callback: Callback | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits (N, 2) and raw embeddings (N, D) of every row of ``data`` (a dataset, or a sample table
        made into one), in row order; see :func:`hardmine.engine.inference.predict`."""
        dataset = data if isinstance(data, ImageDataset) else self.dataset(data)
        return predict(model, dataset, **self._inference(), tta=tta, callback=callback)

    def score(self, model, table: pd.DataFrame, **options: Any):
        """:func:`hardmine.engine.scoring.score_dataset` of ``table``'s images with this engine's inference
        settings; ``options`` are its keyword options (threshold, tta, center, embeddings_path...)."""
        from hardmine.engine.scoring import score_dataset

        return score_dataset(model, self.dataset(table), table["id"], **self._inference(), **options)

    def _inference(self) -> dict[str, Any]:
        # inference holds no gradients: twice the training batch fits
        cfg = self.config
        return {"batch_size": cfg.batch_size * 2, "device": self.device, "amp": cfg.amp, "num_workers": cfg.num_workers}
