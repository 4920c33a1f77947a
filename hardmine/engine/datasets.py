"""The torch side of the sample table: transforms by augmentation name and a map-style image dataset."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from hardmine.core.errors import DataError
from hardmine.data.images import AUGMENTS, file_stamp, load_image


def build_transform(image_size: int, train: bool, augment: str = "dermoscopy"):
    """Torchvision transform: resize, then (when ``train``) the augmentation ``augment`` names.

    ``dermoscopy``: flips in both axes, full rotations and mild colour jitter; dermoscopy
    has no canonical orientation and colour carries diagnosis. ``light``: horizontal
    flips and small shifts, for data with an orientation (a rotated 6 is a 9).
    ``none``: no augmentation.
    """
    from torchvision import transforms as T

    if augment not in AUGMENTS:
        raise DataError(f"augment={augment!r} is not valid; expected one of {', '.join(AUGMENTS)}")
    steps = [T.Resize((image_size, image_size), antialias=True)]
    if train:
        steps += AUGMENTATIONS[augment](T)
    steps += [T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    return T.Compose(steps)


def _dermoscopy(T) -> list:
    return [T.RandomHorizontalFlip(), T.RandomVerticalFlip(), T.RandomRotation(180),
            T.ColorJitter(brightness=0.15, contrast=0.15, saturation=0.1, hue=0.02)]  # fmt: skip


def _light(T) -> list:
    return [T.RandomAffine(degrees=8, translate=(0.06, 0.06)), T.ColorJitter(brightness=0.1, contrast=0.1)]


# --augment name (hardmine.data.images.AUGMENTS) -> the training steps it adds, from torchvision.transforms
AUGMENTATIONS = {"dermoscopy": _dermoscopy, "light": _light, "none": lambda T: []}


class ImageDataset:
    """A map-style torch dataset over the sample table.

    ``dataset[i]`` returns ``(image_tensor (3, S, S), label int, i)`` so that
    per-sample results map back to table rows. Implemented without subclassing
    to keep ``torch`` out of import time; torch's DataLoader only needs
    ``__len__`` and ``__getitem__``.
    """

    def __init__(self, table: pd.DataFrame, image_size: int = 224, train: bool = False, augment: str = "dermoscopy"):
        self.table = table.reset_index(drop=True)
        self.paths = self.table["path"].tolist()
        self.labels = self.table["label"].to_numpy(dtype=np.int64)
        self.image_size = image_size
        self.train = train
        self.transform = build_transform(image_size, train, augment)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = DECODED.get(self.paths[index], self.image_size)
        return self.transform(image), int(self.labels[index]), int(index)


class DecodedImages:
    """Decoded images, resized to the model's input, kept in RAM for the process's later passes.

    Every epoch, validation pass and scoring pass of a run (and every run of a ``compare``) reads
    the same files: after the first pass an image costs an array copy instead of a decode and a
    resize. The transform's resize is then a no-op, so results are the same bit for bit.

    Only the main process adds images: loader worker processes (GPU machines) decode in parallel
    and would each hold a copy. The budget is ``$HARDMINE_IMAGE_CACHE_MB`` (0 turns it off), by
    default a quarter of the memory available when first used, at most 4 GiB; past it, images
    are decoded as before. Keyed by path and size, and trusted while the file's
    :func:`~hardmine.data.images.file_stamp` is unchanged (a rewrite with a restored modification
    time is seen by its status-change time).
    """

    def __init__(self):
        self.images: dict[tuple[str, int], tuple[list[int], np.ndarray]] = {}
        self.budget: int | None = None
        self.used = 0

    def get(self, path: str, size: int):
        from PIL import Image

        key = (path, size)
        found = self.images.get(key)
        stamp = file_stamp(path)  # None: load_image names the missing file
        if found is not None and found[0] == stamp:
            return Image.fromarray(found[1])
        image = load_image(path, size).resize((size, size), Image.BILINEAR)
        if stamp is not None and self._room(size * size * 3):
            array = np.asarray(image)
            self.used += array.nbytes - (found[1].nbytes if found is not None else 0)
            self.images[key] = (stamp, array)
        return image

    def _room(self, nbytes: int) -> bool:
        if self.budget is None:
            self.budget = _cache_budget()
        return self.used + nbytes <= self.budget and _in_main_process()


def _cache_budget() -> int:
    configured = os.environ.get("HARDMINE_IMAGE_CACHE_MB")
    if configured is not None:
        try:
            return max(0, int(float(configured) * 2**20))
        except ValueError:
            raise DataError(f"HARDMINE_IMAGE_CACHE_MB={configured!r} is not valid; expected megabytes, "
                            "0 to turn the cache off") from None  # fmt: skip
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return 0
    available = next((int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:")), 0)
    return min(available // 4, 4 * 2**30)


def _in_main_process() -> bool:
    from torch.utils.data import get_worker_info

    return get_worker_info() is None


DECODED = DecodedImages()  # one per process


class EpochSeeded:
    """A training dataset read by ``(index, epoch)``: torch's random state is seeded from (seed, epoch,
    index) for that one sample's transform and restored after, so augmentations do not depend on
    which process or in which order samples are loaded."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, int(seed)
        self.labels = dataset.labels

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        import torch  # loaded already by then; this module imports no torch at import time

        index, epoch = key
        generator = torch.default_generator  # the CPU one alone: torch.manual_seed also queues CUDA seeding, 1 ms
        state = generator.get_state()
        generator.manual_seed(((self.seed * 1_000_003 + epoch) * 10_000_019 + index) % 2**63)
        try:
            return self.dataset[index]
        finally:
            generator.set_state(state)
