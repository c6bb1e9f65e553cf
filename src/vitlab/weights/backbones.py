"""Where the published DINOv2, SigLIP and CLIP image towers live, and how their inputs must look.

One entry per registry name: the timm and Hugging Face Hub ids of its weights, the test-time preprocessing
its authors use (the ``eval_*`` fields of ViTConfig, mean and std), what ``load_model`` cannot read off
a timm file, the pretraining data and the license. The pretrained-weights catalog (``catalog.BACKBONES``)
makes each an entry, downloaded by its own code; this module only states the facts, so that the catalog
and the documentation cannot disagree.

Preprocessing follows the original releases (DINOv2's and OpenAI CLIP's processors, big_vision's SigLIP
resize), which is also what their Hugging Face ``preprocessor_config.json`` says; timm's configs differ
in places (a 0.9 crop for SigLIP, 518 px without crop for DINOv2).

Licenses of the weights: DINOv2 Apache-2.0 (facebookresearch/dinov2's LICENSE since August 2023; timm's
pretrained_cfg ``license='apache-2.0'``); SigLIP Apache-2.0 (big_vision's LICENSE, which the checkpoints
are released under; the transformers repositories' model cards say apache-2.0); OpenAI CLIP MIT (the
LICENSE of github.com/openai/CLIP, "Copyright (c) 2021 OpenAI", which released the weights).
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
    pretrain: str  # the data the weights were trained on (DINOv2, SigLIP and CLIP papers)
    license: str
    eval_interpolation: str = "bicubic"
    # what the tower outputs beyond its pooled features: OpenAI CLIP's projection into the image-text space
    # (timm's ``head``, transformers' ``visual_projection``); 0 for DINOv2 and SigLIP, released without one
    num_classes: int = 0
    timm_aliases: tuple[str, ...] = ()  # other timm model names whose hub id is ``timm`` (timm's quickgelu CLIPs)
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
        img_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, eval_resize="shorter", eval_crop_pct=224 / 256,
        pretrain="LVD-142M", license="Apache-2.0")


def _siglip(model: str, timm: str, hf: str | None, img_size: int) -> BackboneWeights:
    return BackboneWeights(model=model, timm=timm, hf=hf, img_size=img_size, mean=(0.5, 0.5, 0.5),
                           std=(0.5, 0.5, 0.5), eval_resize="whole", eval_crop_pct=1.0, pretrain="WebLI",
                           license="Apache-2.0", timm_overrides={"act": "gelu_tanh"})


def _clip(model: str, timm: str, hf: str, projection: int) -> BackboneWeights:
    # timm names the same file also as the *_clip_quickgelu_* model (its hub id is the plain *_clip_* one)
    quickgelu = timm.removeprefix("timm/").replace("_clip_", "_clip_quickgelu_")
    return BackboneWeights(model=model, timm=timm, hf=hf, img_size=224, mean=CLIP_MEAN, std=CLIP_STD,
                           eval_resize="shorter", eval_crop_pct=1.0, pretrain="WIT-400M (OpenAI)", license="MIT",
                           num_classes=projection, timm_aliases=(quickgelu,), timm_overrides={"act": "quick_gelu"})


BACKBONE_WEIGHTS: dict[str, BackboneWeights] = {w.model: w for w in [
    *(_dinov2(size, hf_size, reg) for size, hf_size in (("small", "small"), ("base", "base"), ("large", "large"),
                                                        ("giant", "giant")) for reg in (False, True)),
    *(_siglip(f"vit_b16_siglip_{n}", f"timm/vit_base_patch16_siglip_{n}.webli", f"google/siglip-base-patch16-{n}", n)
      for n in (224, 256, 384)),
    _siglip("vit_so400m14_siglip_224", "timm/vit_so400m_patch14_siglip_224.webli", "google/siglip-so400m-patch14-224",
            224),
    # transformers' so400m release is at 384 px, which 14 px patches do not divide; timm's 378 px is exact
    _siglip("vit_so400m14_siglip_378", "timm/vit_so400m_patch14_siglip_378.webli", None, 378),
    _clip("vit_b16_clip", "timm/vit_base_patch16_clip_224.openai", "openai/clip-vit-base-patch16", 512),
    _clip("vit_l14_clip", "timm/vit_large_patch14_clip_224.openai", "openai/clip-vit-large-patch14", 768),
]}
