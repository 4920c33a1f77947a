"""The engine of a run: its training configuration turned into datasets, models and one ``predict``.

Every step that needs torch goes through an :class:`Engine`: it builds the
image dataset of a sample table (a split of a run, or any table of image
paths), builds or loads the model, and runs inference with the run's batch
size, device, precision and loader workers, spelled here once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hardmine.engine import distributed
from hardmine.engine.datasets import ImageDataset
from hardmine.engine.inference import Callback, predict, resolve_device
from hardmine.engine.models import build_model, load_weights
from hardmine.record.config import TrainConfig

_AUTO_THREADS: int | None = None  # chosen once per process


def free_cores(interval: float = 0.2) -> int | None:
    """CPU cores left idle (or to niced work) by other processes, sampled from ``/proc/stat`` over
    ``interval`` seconds (None where there is no ``/proc/stat``)."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        # user nice system idle iowait ...: niced work yields to ours, so it counts as free
        return sum(fields), fields[1] + fields[3] + fields[4]

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    machine = os.cpu_count() or 1
    ours = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else machine
    busy = machine * (1 - (idle1 - idle0) / max(total1 - total0, 1))
    return max(1, min(ours, round(ours - busy)))


def configure_threads(threads: int | None, device) -> int:
    """Set torch's CPU threads: ``threads`` when given; else, for CPU training, the cores other processes
    leave free when first asked (measured: on 2 shared cores with one busy, the tiny model trained
    about 2x faster on 1 thread than on 2, and 1.3-1.7x slower on 1 when both were idle), chosen once
    per process. Returns the number in use."""
    import torch

    global _AUTO_THREADS
    if threads is not None:
        torch.set_num_threads(int(threads))
    elif getattr(device, "type", "cpu") == "cpu":
        if _AUTO_THREADS is None:
            _AUTO_THREADS = free_cores() or torch.get_num_threads()
            torch.set_num_threads(_AUTO_THREADS)
    return torch.get_num_threads()


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
        configure_threads(config.threads, self.device)

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
        return self._frozen(build_model(cfg.model, cfg.weights, seed=cfg.seed + seed_offset))

    def load_model(self, checkpoint: str | os.PathLike):
        """The configured architecture with the state dict at ``checkpoint`` (read with ``weights_only=True``)."""
        model = build_model(self.config.model, "none")
        load_weights(model, checkpoint)
        return self._frozen(model)

    def _frozen(self, model):
        if self.config.frozen:  # every pass of a frozen run embeds an image once (hardmine.engine.feature_memo)
            model.remember_features()
        return model

    def predict(
        self, model, data: ImageDataset | pd.DataFrame, *, tta: bool = False, callback: Callback | None = None,
        loader=None,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Logits (N, 2) and raw embeddings (N, D) of every row of ``data`` (a dataset, or a sample table
        made into one), in row order; see :func:`hardmine.engine.inference.predict` (``loader``: one
        already made over ``data``, reused)."""
        dataset = data if isinstance(data, ImageDataset) else self.dataset(data)
        return predict(model, dataset, **self._inference(), tta=tta, callback=callback, loader=loader)

    def score(self, model, table: pd.DataFrame, **options: Any):
        """:func:`hardmine.engine.scoring.score_dataset` of ``table``'s images with this engine's inference
        settings; ``options`` are its keyword options (threshold, tta, center, embeddings_path...)."""
        from hardmine.engine.scoring import score_dataset

        return score_dataset(model, self.dataset(table), table["id"], **self._inference(), **options)

    def _inference(self) -> dict[str, Any]:
        # inference holds no gradients: twice the training batch fits
        cfg = self.config
        return {"batch_size": cfg.batch_size * 2, "device": self.device, "precision": cfg.precision,
                "num_workers": cfg.num_workers}  # fmt: skip
