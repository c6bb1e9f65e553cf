"""Where the published DINOv2, SigLIP and CLIP image towers live, and how their inputs must look.

One entry per registry name: the timm and Hugging Face Hub ids of its weights, the test-time preprocessing
its authors use (the ``eval_*`` fields of ViTConfig, mean and std) and what ``load_model`` cannot read off
a timm file. The pretrained-weights catalog resolves these names with its own download code; this module
only states the facts, so that the catalog and the documentation cannot disagree.

Preprocessing follows the original releases (DINOv2's and OpenAI CLIP's processors, big_vision's SigLIP
resize), which is also what their Hugging Face ``preprocessor_config.json`` says; timm's configs differ
in places (a 0.9 crop for SigLIP, 518 px without crop for DINOv2).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..models.registry import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class BackboneWeights:
    """A registry name's published weights and preprocessing."""

    model: str  # vitlab registry name
    timm: str  # Hub id of timm's safetensors (timm.create_model("hf-hub:" + id) in timm)
    hf: str | None  # Hub id of the transformers model (None: no transformers release at this shape)
    img_size: int  # the size the authors evaluate at (DINOv2: 224 crops of its 518 px position grid)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    eval_resize: str  # "whole" or "shorter" (vitlab.data.preprocess)
    eval_crop_pct: float
    eval_interpolation: str = "bicubic"
    # load_model overrides a timm file needs: what its shapes cannot say (OpenAI CLIP's quick-GELU; SigLIP's
    # tanh GELU, which timm replaces by exact GELU)
    timm_overrides: dict[str, Any] = field(default_factory=dict)

    def load_overrides(self, source: str) -> dict[str, Any]:
        """``load_model(path, **overrides)`` for a file from ``source`` ("timm" or "hf"): image size and
        preprocessing (an HF directory's preprocessor_config.json says the same), plus the timm fixes."""
        if source not in ("timm", "hf"):
            raise ValueError(f"source must be 'timm' or 'hf', got {source!r}")
        pre = dict(img_size=self.img_size, mean=self.mean, std=self.std, eval_resize=self.eval_resize,
                   eval_crop_pct=self.eval_crop_pct, eval_interpolation=self.eval_interpolation)
        return {**pre, **(self.timm_overrides if source == "timm" else {})}


def _dinov2(size: str, hf_size: str, reg: bool) -> BackboneWeights:
    r = "_reg4" if reg else ""
    return BackboneWeights(
        model=f"vit_{size[0]}14{r}_dinov2", timm=f"timm/vit_{size}_patch14{r}_dinov2.lvd142m",
        hf=f"facebook/dinov2-{'with-registers-' if reg else ''}{hf_size}",
        img_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, eval_resize="shorter", eval_crop_pct=224 / 256)


def _siglip(model: str, timm: str, hf: str | None, img_size: int) -> BackboneWeights:
    return BackboneWeights(model=model, timm=timm, hf=hf, img_size=img_size, mean=(0.5, 0.5, 0.5),
                           std=(0.5, 0.5, 0.5), eval_resize="whole", eval_crop_pct=1.0,
                           timm_overrides={"act": "gelu_tanh"})


def _clip(model: str, timm: str, hf: str) -> BackboneWeights:
    return BackboneWeights(model=model, timm=timm, hf=hf, img_size=224, mean=CLIP_MEAN, std=CLIP_STD,
                           eval_resize="shorter", eval_crop_pct=1.0, timm_overrides={"act": "quick_gelu"})


BACKBONE_WEIGHTS: dict[str, BackboneWeights] = {w.model: w for w in [
    *(_dinov2(size, hf_size, reg) for size, hf_size in (("small", "small"), ("base", "base"), ("large", "large"),
                                                        ("giant", "giant")) for reg in (False, True)),
    *(_siglip(f"vit_b16_siglip_{n}", f"timm/vit_base_patch16_siglip_{n}.webli", f"google/siglip-base-patch16-{n}", n)
      for n in (224, 256, 384)),
    _siglip("vit_so400m14_siglip_224", "timm/vit_so400m_patch14_siglip_224.webli", "google/siglip-so400m-patch14-224",
            224),
    # transformers' so400m release is at 384 px, which 14 px patches do not divide; timm's 378 px is exact
    _siglip("vit_so400m14_siglip_378", "timm/vit_so400m_patch14_siglip_378.webli", None, 378),
    _clip("vit_b16_clip", "timm/vit_base_patch16_clip_224.openai", "openai/clip-vit-base-patch16"),
    _clip("vit_l14_clip", "timm/vit_large_patch14_clip_224.openai", "openai/clip-vit-large-patch14"),
]}
