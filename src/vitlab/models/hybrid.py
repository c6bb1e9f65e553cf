"""The hybrid patch embedding (paper section 3.1): patches of a BiT ResNet feature map instead of pixels.

A drop-in for vit.PatchEmbed when ``ViTConfig.backbone_layers`` is set: image -> ResNet root and stages
-> P x P "patches" of the feature map (P = 1 for the paper's R50/R26 hybrids) -> tokens.
"""
from __future__ import annotations

import math

from torch import Tensor, nn

from ..utils.size import Size
from .layers import check_image, lecun_normal_
from .resnet import ROOT_WIDTH, ResNetBackbone, backbone_channels, backbone_stride, init_resnet_, make_stem


class HybridEmbed(nn.Module):
    """ResNet feature map -> P x P patches -> tokens. ``layers``: the stage depths (``()`` for the root
    only); ``width``: the ResNet width multiplier (root channels = 64 x width)."""

    def __init__(self, layers: tuple[int, ...], width: float, in_chans: int, patch_size: int, embed_dim: int,
                 img_size: Size, dynamic_img_size: bool = False):
        super().__init__()
        channels = int(ROOT_WIDTH * width)
        if channels < 1:
            raise ValueError(f"backbone_width={width} gives a root with {channels} channels")
        self.in_chans = in_chans
        self.patch_size = patch_size
        self.img_size = img_size
        self.strict_img_size = not dynamic_img_size
        self.stride = backbone_stride(layers)
        # timm's layout: a full ResNetV2 for staged backbones, the bare stem for root-only ones.
        self.backbone = ResNetBackbone(layers, channels, in_chans) if layers else make_stem(in_chans, channels)
        if not layers:
            init_resnet_(self.backbone)
        self.proj = nn.Conv2d(backbone_channels(layers, channels), embed_dim, patch_size, stride=patch_size)
        lecun_normal_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def feature_size(self, img_size: Size) -> Size:
        """Size of the ResNet feature map: every SAME stride-2 op maps n -> ceil(n / 2)."""
        h, w = img_size
        if h < 1 or w < 1:
            raise ValueError(f"input size {h}x{w} must be positive")
        return (math.ceil(h / self.stride), math.ceil(w / self.stride))

    def grid_size(self, img_size: Size) -> Size:
        fh, fw = self.feature_size(img_size)
        p = self.patch_size
        if fh % p or fw % p:
            h, w = img_size
            raise ValueError(
                f"input size {h}x{w} gives a {fh}x{fw} ResNet feature map (stride {self.stride}) that is not "
                f"divisible by the patch size {p}; use a size that is a multiple of {self.stride * p}"
            )
        return (fh // p, fw // p)

    def forward(self, x: Tensor) -> tuple[Tensor, Size]:
        """(B, C, H, W) -> tokens (B, h*w, D) in row-major order, and the grid (h, w)."""
        check_image(x, self.in_chans)
        if self.strict_img_size and tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(
                f"input size {tuple(x.shape[-2:])} does not match the model's img_size {self.img_size}; "
                "call model.set_input_size(...) or create the model with dynamic_img_size=True"
            )
        grid = self.grid_size(tuple(x.shape[-2:]))
        return self.proj(self.backbone(x)).flatten(2).transpose(1, 2), grid
