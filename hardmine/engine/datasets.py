"""The torch side of the sample table: transforms by augmentation name and a map-style image dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hardmine.core.errors import DataError
from hardmine.data.images import AUGMENTS, load_image


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
    if train and augment == "dermoscopy":
        steps += [
            T.RandomHorizontalFlip(),
            T.RandomVerticalFlip(),
            T.RandomRotation(180),
            T.ColorJitter(brightness=0.15, contrast=0.15, saturation=0.1, hue=0.02),
        ]
    elif train and augment == "light":
        steps += [T.RandomAffine(degrees=8, translate=(0.06, 0.06)), T.ColorJitter(brightness=0.1, contrast=0.1)]
    steps += [T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    return T.Compose(steps)


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
        image = load_image(self.paths[index], self.image_size)
        return self.transform(image), int(self.labels[index]), int(index)
