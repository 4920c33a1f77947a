"""One forward over a loader of a user's own: each sample's P(positive) and the embedding its last layer
reads, in dataset order (``HardMiner.score`` and ``query_model`` build on it).

A batch may be ``(x, y)``, ``(x, y, index)``, ``(x,)`` or a dict naming them (:data:`IMAGE_KEYS`,
:data:`LABEL_KEYS`, :data:`INDEX_KEYS`); without indices the loader must not shuffle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hardmine.core.errors import HardmineError

IMAGE_KEYS = ("image", "images", "x", "input", "inputs", "img", "pixel_values")
LABEL_KEYS = ("label", "labels", "y", "target", "targets")
INDEX_KEYS = ("index", "indices", "idx")


def forward_collect(
    model, loader, n: int, device=None, *, positive_class: int | None = None, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """P(positive) (N,) and embeddings (N, D) of every sample from one forward per batch.

    Batches are ``(x, y)``, ``(x, y, index)`` or dicts with an image key
    (``image``, ``x``, ``input``...), optionally a label and an ``index`` key.
    Rows land by ``index`` when the batch has one, else in loader order, which
    is refused when the loader shuffles. When batches carry labels and
    ``labels`` is given, they must match the miner's labels at those rows (a
    mismatch means probabilities would land on the wrong images).

    Works with models returning logits or ``(logits, embedding)``; for plain
    logits, the input of the last ``nn.Linear`` is captured as the embedding.
    Logits may be ``(B,)`` or ``(B, 1)`` (sigmoid), ``(B, 2)``, or ``(B, C)``
    with ``positive_class`` (one-vs-rest softmax probability).
    """
    import torch
    from torch import nn

    device = torch.device(device) if device is not None else next(model.parameters()).device
    shuffled = _shuffling_sampler(loader)
    captured: dict[str, torch.Tensor] = {}
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    hook = None
    if linears:
        hook = linears[-1].register_forward_pre_hook(lambda mod, args: captured.__setitem__("emb", args[0]))
    probs = np.full(n, np.nan)
    emb_out: np.ndarray | None = None
    position = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                x, y, index = _unpack(batch)
                if index is None:
                    if shuffled:
                        raise HardmineError(
                            f"the scoring loader draws with {shuffled} and its batches carry no sample index, so "
                            "probabilities would land on the wrong images; use shuffle=False or yield "
                            "(x, y, index)"
                        )  # fmt: skip
                    index = np.arange(position, position + len(x))
                position += len(x)
                if index.max(initial=-1) >= n or index.min(initial=0) < 0:
                    raise HardmineError(f"the loader yields sample index {int(index.max())} but the miner holds "
                                        f"{n} samples (indices 0..{n - 1})")  # fmt: skip
                if labels is not None and y is not None:
                    _check_labels(y, labels, index, positive_class)
                out = model(x.to(device))
                logits, emb = out if isinstance(out, tuple) else (out, captured.get("emb"))
                if emb is None:
                    raise HardmineError(
                        "cannot find an embedding: the model has no nn.Linear head; return (logits, emb)"
                    )
                probs[index] = positive_probability(logits, positive_class)
                e = torch.flatten(emb, 1).float().cpu().numpy()
                if emb_out is None:
                    emb_out = np.zeros((n, e.shape[1]), dtype=np.float32)
                emb_out[index] = e
    finally:
        if hook is not None:
            hook.remove()
        model.train(was_training)
    if np.isnan(probs).any():
        raise HardmineError(f"the loader covered {int((~np.isnan(probs)).sum())} of {n} samples; it must yield "
                            "every one (the whole training set, or the whole pool)")  # fmt: skip
    return probs, emb_out


def positive_probability(logits, positive_class: int | None = None) -> np.ndarray:
    """(B,) P(positive) from logits ``(B,)``/``(B, 1)`` (sigmoid), ``(B, 2)`` or ``(B, C)`` with ``positive_class``."""
    import torch

    logits = logits.float()
    if logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
        if positive_class not in (None, 1):
            raise HardmineError(f"positive_class={positive_class} with a single logit; the logit is the positive's")
        return torch.sigmoid(logits.reshape(-1)).cpu().numpy()
    if logits.ndim != 2:
        raise HardmineError(f"the model returns logits of shape {tuple(logits.shape)}; expected (B,), (B, 1) or (B, C)")
    classes = logits.shape[1]
    if positive_class is None:
        if classes != 2:
            raise HardmineError(f"the model returns {classes} logits per sample; pass positive_class=<column> to "
                                "mine that class against the rest")  # fmt: skip
        positive_class = 1
    if not 0 <= positive_class < classes:
        raise HardmineError(f"positive_class={positive_class} but the model returns {classes} logits")
    return torch.softmax(logits, dim=1)[:, positive_class].cpu().numpy()


def _shuffling_sampler(loader) -> str | None:
    """The name of a DataLoader's sampler when it is not sequential (None for sequential or unknown)."""
    from torch.utils.data import DataLoader, SequentialSampler

    if not isinstance(loader, DataLoader):
        return None
    sampler = loader.batch_sampler.sampler if loader.batch_sampler is not None else loader.sampler
    sampler = getattr(sampler, "sampler", sampler)  # a BatchSampler wrapped in another
    return None if isinstance(sampler, SequentialSampler) else type(sampler).__name__


def _unpack(batch) -> tuple[Any, Any, np.ndarray | None]:
    """``(x, y or None, index array or None)`` from a tuple/list or a dict batch."""
    if isinstance(batch, dict):
        x = next((batch[k] for k in IMAGE_KEYS if k in batch), None)
        if x is None:
            raise HardmineError(f"a dict batch needs an image under one of {', '.join(IMAGE_KEYS)}; "
                                f"got keys {', '.join(map(str, batch))}")  # fmt: skip
        y = next((batch[k] for k in LABEL_KEYS if k in batch), None)
        index = next((batch[k] for k in INDEX_KEYS if k in batch), None)
    elif isinstance(batch, (tuple, list)) and len(batch) in (1, 2, 3):  # (x,): unlabeled images (fastai's test_dl)
        x, y = batch[0], batch[1] if len(batch) > 1 else None
        index = batch[2] if len(batch) == 3 else None
    else:
        kind = f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise HardmineError(f"cannot read a batch that is {kind}; expected (x,), (x, y), (x, y, index) or a dict "
                            "with image, label and index keys")  # fmt: skip
    if index is not None:
        index = np.asarray(index.cpu() if hasattr(index, "cpu") else index).astype(np.int64).reshape(-1)
    return x, y, index


def _check_labels(y, labels: np.ndarray, index: np.ndarray, positive_class: int | None) -> None:
    y = np.asarray(y.cpu() if hasattr(y, "cpu") else y).reshape(-1)
    if len(y) != len(index):
        return  # not per-sample class labels (one-hot, masks...): nothing to compare
    if positive_class is None and not np.isin(y, (0, 1)).all():
        return
    binary = (y == (1 if positive_class is None else positive_class)).astype(np.int64)
    wrong = np.flatnonzero(binary != labels[index])
    if len(wrong) == len(index) > 1 and positive_class is None:
        raise HardmineError(
            f"every label in the loader's batch differs from the miner's ({len(wrong)} of {len(index)}): the classes "
            "are numbered the other way round; pass positive_class=<the positive's index in the loader> "
            "(or build the miner with the loader's numbering)"
        )
    if len(wrong):
        raise HardmineError(
            f"the loader's label at sample {int(index[wrong[0]])} is {y[wrong[0]]} but the miner holds "
            f"{labels[index[wrong[0]]]} there ({len(wrong)} of {len(index)} in that batch differ): the loader is "
            "in another order than the miner's labels (shuffled, or another dataset); score with shuffle=False "
            "or yield (x, y, index)"
        )
