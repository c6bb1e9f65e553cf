"""BiT-style ResNets: the CNN of the paper's hybrid models (section 3.1) and its ResNet baseline.

    image -> root: StdConv 7x7/2 -> GroupNorm -> ReLU -> max-pool 3x3/2            (stride 4)
          -> stages of bottleneck units (stage 1 stride 1, every later stage stride 2)
          -> hybrid: 1x1 (or P x P) "patch" conv over the feature map -> ViT tokens
          -> classifier: global average pool -> Linear head

Facts follow the official ViT hybrid code (vit_jax/models_vit.py, models_resnet.py), which differs from
the BiT release and from timm in small ways that matter for its checkpoints:
- Weight standardisation divides by ``std + 1e-5`` (population std over H, W, in). BiT and timm add
  their eps to the *variance* instead; for trained kernels (std ~1e-2) the two differ by ~1e-3
  relative, so the official formula is the one that reproduces the official hybrid checkpoints.
- GroupNorm: 32 groups, eps 1e-6 (Flax's default; timm's GroupNormAct uses 1e-5).
- Bottleneck units are *not* pre-activation: conv-GN-ReLU twice, conv-GN (scale initialised to 0),
  projection (conv + GN) when the stride or width changes, ``relu(residual + y)``; stride on the 3x3.
- Every conv and the root max-pool use TensorFlow "SAME" padding, computed from the input size at
  run time, so odd sizes and any resolution work (asymmetric padding for even inputs).

Module names mirror timm's ResNetV2 (``stem.conv``, ``stem.norm``, ``stages.i.blocks.j.conv1`` ...,
``downsample.conv``/``norm``) so timm's hybrid checkpoints load with no renaming; the root-only hybrid
(R+ViT-Ti/16) uses the bare stem as its backbone, as timm does (``backbone.conv``, ``backbone.norm``).
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..utils.eval_fields import check_fields
from ..utils.size import Size, to_2tuple
from .layers import ConfigDict, check_image, lecun_normal_
from .pretrained import save_pretrained

WS_EPS = 1e-5  # official: w / (std + 1e-5)
GN_EPS = 1e-6
GN_GROUPS = 32
ROOT_WIDTH = 64
ARCHITECTURE = "resnet"  # the "architecture" entry save_pretrained writes for ResNet classifiers


# ----------------------------------------------------------------------------------------------------
# TensorFlow "SAME" padding and weight-standardised convolution.


def same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of TF "SAME" along one axis: output ceil(size / stride), extra pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: Tensor, kernel: int, stride: int, dilation: int, value: float) -> tuple[Tensor, tuple[int, int]]:
    """Pad ``x`` for SAME; symmetric padding is returned instead of applied, so the op can do it for free."""
    top, bottom = same_padding(x.shape[-2], kernel, stride, dilation)
    left, right = same_padding(x.shape[-1], kernel, stride, dilation)
    if top == bottom and left == right:
        return x, (top, left)
    return F.pad(x, (left, right, top, bottom), value=value), (0, 0)


class StdConv2d(nn.Conv2d):
    """Conv2d whose kernel is standardised at run time (the stored weight stays raw), SAME padding.

    Weight standardisation (Qiao et al. 2019) is what lets BiT use GroupNorm at any batch size.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, eps: float = WS_EPS):
        super().__init__(in_chs, out_chs, kernel_size, stride=stride, padding=0, bias=False)
        self.eps = eps

    def standardized_weight(self) -> Tensor:
        std, mean = torch.std_mean(self.weight, dim=(1, 2, 3), keepdim=True, correction=0)
        return (self.weight - mean) / (std + self.eps)

    def forward(self, x: Tensor) -> Tensor:
        x, pad = _pad_same(x, self.kernel_size[0], self.stride[0], self.dilation[0], 0.0)
        return F.conv2d(x, self.standardized_weight(), None, self.stride, pad, self.dilation, self.groups)


class MaxPool2dSame(nn.Module):
    """Max-pool with TF "SAME" padding: padded positions never win (they are -inf)."""

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: Tensor) -> Tensor:
        x, pad = _pad_same(x, self.kernel_size, self.stride, 1, float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride, pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding=SAME"


def group_norm(channels: int) -> nn.GroupNorm:
    if channels % GN_GROUPS:
        raise ValueError(f"GroupNorm needs channels divisible by {GN_GROUPS}, got {channels}; choose a width "
                         f"multiplier that keeps every stage width (64 x width x 2^i) a multiple of {GN_GROUPS}")
    return nn.GroupNorm(GN_GROUPS, channels, eps=GN_EPS)


# ----------------------------------------------------------------------------------------------------
# Root, bottleneck units, stages.


def make_stem(in_chans: int, width: int) -> nn.Sequential:
    """The root block: StdConv 7x7 stride 2 -> GroupNorm -> ReLU -> max-pool 3x3 stride 2 (stride 4)."""
    return nn.Sequential(OrderedDict(
        conv=StdConv2d(in_chans, width, 7, stride=2),
        norm=group_norm(width),
        act=nn.ReLU(inplace=True),
        pool=MaxPool2dSame(3, 2),
    ))


class Downsample(nn.Module):
    """The projection shortcut: StdConv 1x1 (with the unit's stride) + GroupNorm."""

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        self.conv = StdConv2d(in_chs, out_chs, 1, stride=stride)
        self.norm = group_norm(out_chs)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """Official ResidualUnit: 1x1 -> 3x3 (stride) -> 1x1 (4x width), GN after each, ReLU after the sum."""

    def __init__(self, in_chs: int, mid_chs: int, stride: int = 1):
        super().__init__()
        out_chs = 4 * mid_chs
        self.downsample = Downsample(in_chs, out_chs, stride) if stride != 1 or in_chs != out_chs else None
        self.conv1 = StdConv2d(in_chs, mid_chs, 1)
        self.norm1 = group_norm(mid_chs)
        self.conv2 = StdConv2d(mid_chs, mid_chs, 3, stride=stride)
        self.norm2 = group_norm(mid_chs)
        self.conv3 = StdConv2d(mid_chs, out_chs, 1)
        self.norm3 = group_norm(out_chs)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        y = self.norm3(self.conv3(y))
        return F.relu(shortcut + y)


class ResNetStage(nn.Module):
    def __init__(self, in_chs: int, mid_chs: int, depth: int, stride: int):
        super().__init__()
        self.blocks = nn.Sequential(*(
            Bottleneck(in_chs if i == 0 else 4 * mid_chs, mid_chs, stride if i == 0 else 1) for i in range(depth)
        ))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)


def backbone_stride(layers: tuple[int, ...]) -> int:
    """Total downsampling: 4 for the root, x2 for every stage after the first (R50 (3,4,9): 16)."""
    return 4 * 2 ** max(len(layers) - 1, 0)


def backbone_channels(layers: tuple[int, ...], width: int) -> int:
    """Channels of the final feature map: the root's ``width``, or 4 x width x 2^(stages-1)."""
    return 4 * width * 2 ** (len(layers) - 1) if layers else width


class ResNetBackbone(nn.Module):
    """Root + stages, returning the final feature map (B, C, H/stride, W/stride)."""

    def __init__(self, layers: tuple[int, ...], width: int, in_chans: int = 3):
        super().__init__()
        if not layers or any(d < 1 for d in layers):
            raise ValueError(f"ResNet stage depths must be a non-empty tuple of positive ints, got {layers!r}")
        self.in_chans = in_chans
        self.stride = backbone_stride(layers)
        self.num_features = backbone_channels(layers, width)
        self.stem = make_stem(in_chans, width)
        chs = width
        stages = []
        for i, depth in enumerate(layers):
            stages.append(ResNetStage(chs, width * 2**i, depth, 1 if i == 0 else 2))
            chs = 4 * width * 2**i
        self.stages = nn.Sequential(*stages)
        self.grad_checkpointing = False
        init_resnet_(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and torch.is_grad_enabled():
            for block in (b for s in self.stages for b in s.blocks):
                x = checkpoint(block, x, use_reentrant=False)
            return x
        return self.stages(x)


@torch.no_grad()
def init_resnet_(module: nn.Module) -> None:
    """Official init: Flax's lecun-normal conv kernels, GroupNorm scale 1 / bias 0, but gn3 scale 0 so
    every unit starts as the identity on its shortcut."""
    for m in module.modules():
        if isinstance(m, StdConv2d):
            lecun_normal_(m.weight)
        elif isinstance(m, nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, Bottleneck):
            nn.init.zeros_(m.norm3.weight)


# ----------------------------------------------------------------------------------------------------
# The standalone BiT ResNet classifier: the paper's baseline, on the same data and training loop.


@dataclass
class ResNetConfig(ConfigDict):
    """A BiT ResNet classifier (non-pre-activation units, GroupNorm + weight standardisation)."""

    architecture: ClassVar[str] = ARCHITECTURE

    layers: tuple[int, ...] = (3, 4, 6, 3)
    width: float = 1.0  # width multiplier: the root has int(64 * width) channels (BiT's x1, x2, x3 ...)
    in_chans: int = 3
    num_classes: int = 1000
    img_size: Size = (224, 224)  # the input size the data pipeline should produce; any size runs
    drop_rate: float = 0.0  # dropout before the head
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    class_names: tuple[str, ...] | None = None
    eval_resize: str = "whole"  # test-time preprocessing, as ViTConfig's eval_* fields (vitlab.data.Preprocess)
    eval_crop_pct: float = 1.0
    eval_interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        self.layers = tuple(int(d) for d in self.layers)
        self.img_size = to_2tuple(self.img_size, "img_size")
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        if self.class_names is not None:
            self.class_names = tuple(self.class_names)
        self.validate()

    def validate(self) -> None:
        if not self.layers or any(d < 1 for d in self.layers):
            raise ValueError(f"layers={self.layers!r}: need at least one stage, each with >= 1 unit")
        if self.width <= 0 or int(ROOT_WIDTH * self.width) % GN_GROUPS:
            raise ValueError(f"width={self.width}: the root width int(64 * width) must be a positive multiple of "
                             f"{GN_GROUPS} for GroupNorm({GN_GROUPS}); e.g. 0.5, 1, 2, 3")
        if self.in_chans < 1 or self.num_classes < 0:
            raise ValueError("in_chans must be >= 1 and num_classes >= 0")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"drop_rate={self.drop_rate} must be in [0, 1)")
        if self.class_names is not None and self.num_classes and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class_names given for num_classes={self.num_classes}")
        check_fields("eval_", self.eval_resize, self.eval_crop_pct, self.eval_interpolation)


class ResNet(ResNetBackbone):
    """BiT ResNet with a global-average-pool head; the timm-style API of VisionTransformer."""

    def __init__(self, cfg: ResNetConfig):
        super().__init__(cfg.layers, int(ROOT_WIDTH * cfg.width), cfg.in_chans)
        self.cfg = cfg
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = self._new_head(cfg.num_classes)

    def _new_head(self, num_classes: int) -> nn.Module:
        if num_classes == 0:
            return nn.Identity()
        head = nn.Linear(self.num_features, num_classes)  # zero init, as BiT does for its head
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        return head

    def forward_features(self, x: Tensor) -> Tensor:
        """Image batch -> final feature map (B, C, H/32, W/32 for four stages)."""
        check_image(x, self.in_chans)
        return super().forward(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Feature map -> logits; with ``pre_logits=True`` the pooled features (few-shot evaluation)."""
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(self.head_drop(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int, drop_pre_logits: bool = False) -> None:
        """New zero-initialised head. ``drop_pre_logits`` exists for parity with VisionTransformer: a ResNet
        has no pre-logits layer, so it changes nothing."""
        self.cfg.num_classes = num_classes
        if self.cfg.class_names is not None and len(self.cfg.class_names) != num_classes:
            self.cfg.class_names = None
        ref = self.stem.conv.weight
        self.head = self._new_head(num_classes).to(device=ref.device, dtype=ref.dtype)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each unit's activations in the backward pass (less memory, more compute)."""
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """BiT decays every parameter; the empty set keeps the training loop's interface uniform."""
        return set()

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``path/config.json`` (with ``"architecture": "resnet"``) + ``path/model.safetensors``."""
        save_pretrained(self, path)
