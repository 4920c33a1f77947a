"""Embeddings of a frozen backbone, remembered by the pixels they came from.

With ``--frozen`` every round, step and query runs the same backbone over the
same images: the training split is embedded for scoring, for the head refit
and for the query, the pool once per query, validation and test once per step.
The backbone's output depends only on its weights and the input tensor, so the
memo keys an embedding by a digest of the backbone's weights and a digest of
the image tensor (the preprocessed pixels, so a changed file or another image
size is another key), and a later pass runs only the images it has not seen
(hashing an image costs a small fraction of a forward pass). It is used only in
eval mode (training augments and updates batch-norm statistics) and lives for
the process: ``hardmine round --pool --oracle``, ``compare`` and the
benchmarks run every round in one.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch

MAX_ENTRIES = 200_000  # about 1 GB of 1280-d float32 embeddings; the oldest go first

_memo: OrderedDict[tuple[str, bytes], torch.Tensor] = OrderedDict()


def weights_digest(module: torch.nn.Module, skip: str) -> str:
    """A digest of ``module``'s parameters and buffers, leaving out those under ``skip`` (the head)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in module.state_dict().items():
        if not name.startswith(skip + "."):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def image_keys(images: torch.Tensor) -> list[bytes]:
    """One digest per image of a (B, C, H, W) batch."""
    flat = images.detach().cpu().contiguous()
    return [hashlib.blake2b(row.numpy().tobytes(), digest_size=16).digest() for row in flat]


def lookup(backbone: str, keys: list[bytes]) -> list[torch.Tensor | None]:
    return [_memo.get((backbone, key)) for key in keys]


def remember(backbone: str, keys: list[bytes], embeddings: torch.Tensor) -> None:
    for key, row in zip(keys, embeddings.detach(), strict=True):
        _memo[(backbone, key)] = row.clone()
    while len(_memo) > MAX_ENTRIES:
        _memo.popitem(last=False)


def clear() -> None:
    _memo.clear()
