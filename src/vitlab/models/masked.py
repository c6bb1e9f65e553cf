"""Masked patch prediction, the paper's self-supervised pretraining (appendix B.1.2).

Half of the patch embeddings are corrupted, BERT-style: of those, 80% become a learnable [mask]
embedding, 10% a random other patch's embedding, 10% stay as they are. From each corrupted position's
output token the model predicts that patch's mean colour quantised to 3 bits per channel
(8**C classes: 512 for RGB). Fine-tuning then drops this head and keeps the encoder.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .vit import VisionTransformer

BITS = 3


class MaskedOutput(NamedTuple):
    logits: Tensor  # (M, 8**C) for the M corrupted patches of the batch
    targets: Tensor  # (M,) mean-colour class of each corrupted patch
    mask: Tensor  # (B, N) bool, True where a patch was corrupted

    def loss(self) -> Tensor:
        return F.cross_entropy(self.logits, self.targets)


PixelRange = tuple[float | Sequence[float], float | Sequence[float]]


def pixel_range(mean: Sequence[float], std: Sequence[float], channels: int | None = None) -> PixelRange:
    """Per-channel values that black and white take after ``(x / 255 - mean) / std``: the range the
    colour levels are cut from when the model sees normalised images. A normalisation with the same
    value for every channel (e.g. [-1, 1] as 3 values) fits any ``channels``, as in the data pipeline."""
    if channels is not None and len(mean) != channels:
        if len(set(mean)) != 1 or len(set(std)) != 1:
            raise ValueError(f"mean/std have {len(mean)} values but the model has {channels} channel(s)")
        mean, std = mean[:1], std[:1]
    return tuple((0.0 - m) / s for m, s in zip(mean, std)), tuple((1.0 - m) / s for m, s in zip(mean, std))


def mean_colour_targets(images: Tensor, patch_size: int, pixel_range: PixelRange = (-1.0, 1.0)) -> Tensor:
    """Each patch's per-channel mean colour, quantised to 3 bits per channel -> one class id (B, N).
    ``pixel_range``: (black, white), each a number or one value per channel."""
    lo, hi = (torch.as_tensor(v, dtype=torch.float32, device=images.device) for v in pixel_range)
    means = F.avg_pool2d(images.float(), patch_size).flatten(2).transpose(1, 2)  # (B, N, C)
    levels = ((means - lo) / (hi - lo) * 2**BITS).floor().clamp_(0, 2**BITS - 1).long()
    weights = (2**BITS) ** torch.arange(levels.shape[-1], device=images.device)
    return (levels * weights).sum(-1)


class MaskedPatchPredictor(nn.Module):
    """Wraps a plain-patch ViT with a [mask] embedding and a mean-colour head over its output tokens."""

    def __init__(
        self, model: VisionTransformer, corrupt_ratio: float = 0.5, mask_prob: float = 0.8, random_prob: float = 0.1,
        pixel_range: PixelRange = (-1.0, 1.0),
    ):
        super().__init__()
        if model.cfg.backbone_layers is not None:
            raise ValueError("masked patch prediction needs pixel patches; hybrids embed ResNet features instead")
        if not 0 < corrupt_ratio <= 1 or mask_prob + random_prob > 1:
            raise ValueError("need 0 < corrupt_ratio <= 1 and mask_prob + random_prob <= 1")
        self.model = model
        self.corrupt_ratio, self.mask_prob, self.random_prob = corrupt_ratio, mask_prob, random_prob
        self.pixel_range = pixel_range
        self.mask_token = nn.Parameter(torch.zeros(1, 1, model.cfg.embed_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.head = nn.Linear(model.cfg.embed_dim, (2**BITS) ** model.cfg.in_chans)

    def corrupt(self, tokens: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Corrupt a random ``corrupt_ratio`` of each image's patch embeddings; returns (tokens, mask)."""
        B, N, D = tokens.shape
        dev = tokens.device
        n_corrupt = max(1, round(self.corrupt_ratio * N))
        order = torch.rand(B, N, generator=generator, device=dev).argsort(dim=1)
        mask = torch.zeros(B, N, dtype=torch.bool, device=dev).scatter_(1, order[:, :n_corrupt], True)
        roll = torch.rand(B, N, generator=generator, device=dev)
        to_mask = mask & (roll < self.mask_prob)
        to_random = mask & (roll >= self.mask_prob) & (roll < self.mask_prob + self.random_prob)
        # A random *other* patch embedding from anywhere in the batch: a non-zero offset from its own index.
        own = torch.arange(B * N, device=dev).view(B, N)
        offset = torch.randint(1, max(B * N, 2), (B, N), generator=generator, device=dev)
        donors = tokens.reshape(B * N, D)[(own + offset) % (B * N)]
        out = torch.where(to_random[..., None], donors, tokens)
        out = torch.where(to_mask[..., None], self.mask_token.to(out.dtype).expand(B, N, D), out)
        return out, mask

    def no_weight_decay(self) -> set[str]:
        """The encoder's exclusions under their names here, and the [mask] embedding (like the class token)."""
        return {"mask_token"} | {f"model.{n}" for n in self.model.no_weight_decay()}

    def forward(
        self, images: Tensor, generator: torch.Generator | None = None, encoder: VisionTransformer | None = None
    ) -> MaskedOutput:
        """``encoder``: run another encoder of the same shape (e.g. an EMA copy) with this head and [mask]."""
        m = encoder if encoder is not None else self.model
        tokens, grid = m.patch_embed(images)
        tokens, mask = self.corrupt(tokens, generator)
        x = m._pos_embed(tokens, grid)
        if m.norm_pre is not None:  # CLIP-style encoders normalise the embedded tokens first
            x = m.norm_pre(x)
        for blk in m.blocks:
            x = blk(x)[0]
        x = m.norm(x)[:, m.num_prefix_tokens :]
        targets = mean_colour_targets(images, m.cfg.patch_size, self.pixel_range)
        return MaskedOutput(self.head(x[mask]), targets[mask], mask)
