"""The catalog of named pretrained weights: which file a name means, where it is published, and what a
model needs to use it right (classes, resolution, normalisation, test-time preprocessing). Facts only,
each with its source; a figure that is not published is None and listed as such. No network, no formats:
``hub`` fetches the file, ``load`` reads it like any other checkpoint.

Names are ``ARCH.TAG``: ARCH a vitlab model name (``vitlab models``), TAG the weights, as timm spells them:
``orig_in21k`` (the paper's ImageNet-21k release), ``orig_in21k_ft_in1k`` (fine-tuned on ImageNet-1k),
``augreg_in21k`` / ``augreg_in21k_ft_in1k`` (AugReg, "How to train your ViT?", Steiner et al. 2021). A
resolution suffix (``_224``) names a fine-tune other than the default. Today's backbones (DINOv2, SigLIP,
OpenAI CLIP) take timm's tags too: ``lvd142m``, ``webli``, ``openai``. Aliases: the transformers names
(``google/vit-base-patch16-224``, ``facebook/dinov2-small``) and timm names
(``vit_base_patch16_224.augreg_in21k``, ``timm/vit_small_patch14_dinov2.lvd142m``) of the same weights.

Sources (cited per entry by key):
  README:  github.com/google-research/vision_transformer README.md, "Available ViT models" and the
           recommended AugReg table (file names, sizes in MiB, ImageNet top-1 of the fine-tuned file).
  LS:      the same repository's vit_jax.ipynb, the `gsutil ls -l` listing of gs://vit_models/imagenet21k
           and imagenet21k+imagenet2012 (sizes in MiB / GiB).
  TIMM:    timm 1.0 models/vision_transformer.py and vision_transformer_hybrid.py pretrained_cfg (URLs,
           num_classes, hub ids; "the 21k classifier head is zero'd out in original weights"; repr. sizes
           from timm 0.4's *_in21k model definitions).
  PAPER:   Dosovitskiy et al. 2021, section 3.2 / appendix B.1.1: fine-tuning replaces the whole head
           (pre-logits included) by one linear layer, so fine-tuned files have no pre-logits.
  VIT_JAX: vit_jax/input_pipeline.py: a test image is resized whole to the model's size (bilinear),
           scaled to [-1, 1]: mean = std = 0.5.
  BACKBONES: vitlab/weights/backbones.py (hub ids, the authors' preprocessing, pretraining data, license;
           its docstring cites them).
"""
from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .backbones import BACKBONE_WEIGHTS, BackboneWeights

OFFICIAL_URL = "https://storage.googleapis.com/vit_models/"  # the README's gs://vit_models/ over HTTPS
IMAGENET_21K_CLASSES = 21843
LICENSE = "Apache-2.0"  # google-research/vision_transformer and timm's pretrained_cfg: apache-2.0


@dataclass(frozen=True)
class Pretrained:
    """One named set of weights. ``file``: its path under the official bucket (``source="official"``),
    the file in a Hugging Face hub repository ``hub_repo`` (``source="hf-hub"``), or the directory in
    vitlab's package (``source="vitlab"``)."""

    name: str
    arch: str  # the vitlab model name the weights fit
    source: str  # "official" | "hf-hub" | "vitlab"
    file: str
    pretrain: str  # the data it was pretrained on
    finetune: str | None  # the data its head was fine-tuned on, None for a pretraining checkpoint
    img_size: int
    num_classes: int  # what the loaded model predicts (0: features only, the released head is not valid)
    representation_size: int | None
    size_mib: float | None  # published size on disk
    top1: float | None  # published top-1 accuracy (%) on the fine-tuning data's test/validation set
    top1_source: str | None
    facts: str  # where the entry's figures come from (keys in this module's docstring, or a path)
    hub_repo: str | None = None
    aliases: tuple[str, ...] = ()
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    eval_resize: str = "whole"
    eval_crop_pct: float = 1.0
    eval_interpolation: str = "bilinear"
    class_names: str | None = None  # "imagenet": the 1000 ImageNet-1k names shipped with vitlab
    dataset: str | None = None  # a vitlab data set name the head was trained for (its test split evaluates it)
    license: str = LICENSE
    # further config fields the file cannot tell, as (field, value) pairs: a timm backbone file's activation
    # and the resolution its authors evaluate at
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1]

    def config_fields(self) -> dict:
        """The ViTConfig fields these weights need that a file's shapes do not tell."""
        return {
            "num_classes": self.num_classes,
            "mean": self.mean,
            "std": self.std,
            "eval_resize": self.eval_resize,
            "eval_crop_pct": self.eval_crop_pct,
            "eval_interpolation": self.eval_interpolation,
            "class_names": imagenet_classes() if self.class_names == "imagenet" else None,
            **dict(self.overrides),
        }


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order, each the WordNet lemmas of its synset as one string
    (index 281: "tabby, tabby cat"; the source's two "crane" synsets, bird 134 and machine 517, stay alike)."""
    text = resources.files(__package__).joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line.split("\t", 1)[1] for line in text.splitlines() if line and not line.startswith("#"))
    assert len(names) == 1000, len(names)
    return names


# -- the paper's release: gs://vit_models/imagenet21k and imagenet21k+imagenet2012 -----------------------

def _orig(arch: str, model: str, size_mib: float, repr_size: int, aliases: tuple[str, ...]) -> Pretrained:
    return Pretrained(
        f"{arch}.orig_in21k", arch, "official", f"imagenet21k/{model}.npz", "ImageNet-21k", None, 224,
        num_classes=0, representation_size=repr_size, size_mib=size_mib, top1=None, top1_source=None,
        facts="file: README; size: LS; head zeroed in the release (num_classes 0), pre-logits size: TIMM; eval: VIT_JAX",
        aliases=aliases)


def _orig_ft(arch: str, model: str, size_mib: float, res: int, aliases: tuple[str, ...],
             top1: float | None = None) -> Pretrained:
    suffix = "" if res == 384 else f"_{res}"
    return Pretrained(
        f"{arch}.orig_in21k_ft_in1k{suffix}", arch, "official", f"imagenet21k+imagenet2012/{model}.npz",
        "ImageNet-21k", "ImageNet-1k", res, num_classes=1000, representation_size=None, size_mib=size_mib,
        top1=top1, top1_source="README (2020-10-29 note: \"expected to achieve\")" if top1 else None,
        facts="file: README (no suffix: 384 px; -224: 224 px); size: LS; no pre-logits: PAPER; eval: VIT_JAX",
        aliases=aliases, class_names="imagenet")


_GIB = 1024.0
ORIGINAL = [
    _orig("vit_b16", "ViT-B_16", 393.69, 768, ("google/vit-base-patch16-224-in21k", "vit_base_patch16_224.orig_in21k")),
    _orig("vit_b32", "ViT-B_32", 400.01, 768, ("google/vit-base-patch32-224-in21k", "vit_base_patch32_224.orig_in21k")),
    _orig("vit_l16", "ViT-L_16", 1.22 * _GIB, 1024, ("google/vit-large-patch16-224-in21k", "vit_large_patch16_224.orig_in21k")),
    _orig("vit_l32", "ViT-L_32", 1.23 * _GIB, 1024, ("google/vit-large-patch32-224-in21k", "vit_large_patch32_224.orig_in21k")),
    _orig("vit_h14", "ViT-H_14", 2.46 * _GIB, 1280, ("google/vit-huge-patch14-224-in21k", "vit_huge_patch14_224.orig_in21k")),
    _orig("r50_vit_b16", "R50+ViT-B_16", 439.85, 768, ("vit_base_r50_s16_224.orig_in21k",)),
    _orig_ft("vit_b16", "ViT-B_16", 331.4, 384, ("google/vit-base-patch16-384", "vit_base_patch16_384.orig_in21k_ft_in1k")),
    _orig_ft("vit_b16", "ViT-B_16-224", 330.29, 224, ("google/vit-base-patch16-224", "vit_base_patch16_224.orig_in21k_ft_in1k"),
             top1=81.2),
    _orig_ft("vit_b32", "ViT-B_32", 336.89, 384, ("google/vit-base-patch32-384",)),
    _orig_ft("vit_l16", "ViT-L_16", 1.14 * _GIB, 384, ("google/vit-large-patch16-384",)),
    _orig_ft("vit_l16", "ViT-L_16-224", 1.13 * _GIB, 224, ("google/vit-large-patch16-224",), top1=82.7),
    _orig_ft("vit_l32", "ViT-L_32", 1.14 * _GIB, 384, ("google/vit-large-patch32-384", "vit_large_patch32_384.orig_in21k_ft_in1k")),
    _orig_ft("r50_vit_b16", "R50+ViT-B_16", 377.57, 384, ("vit_base_r50_s16_384.orig_in21k_ft_in1k",)),
]

# -- AugReg: the README's recommended table, gs://vit_models/augreg -------------------------------------
# (arch, README model, pretraining run, README size MiB, fine-tune lr, top-1 %, timm aliases of the pretrained
# file, of the fine-tuned file: only where timm's pretrained_cfg URL is this very file)
_AUGREG_TABLE = [
    ("vit_l16", "L_16", "aug_strong1-wd_0.1-do_0.0-sd_0.0", 1243, "0.01", 85.59, (), ()),
    ("vit_b16", "B_16", "aug_medium1-wd_0.1-do_0.0-sd_0.0", 391, "0.03", 85.49, ("vit_base_patch16_224.augreg_in21k",), ()),
    ("vit_s16", "S_16", "aug_light1-wd_0.03-do_0.0-sd_0.0", 115, "0.03", 83.73,
     ("vit_small_patch16_224.augreg_in21k",), ("vit_small_patch16_384.augreg_in21k_ft_in1k",)),
    ("r50_vit_l32", "R50_L_32", "aug_medium1-wd_0.1-do_0.1-sd_0.1", 1337, "0.01", 85.99, (), ()),
    ("r26_vit_s32", "R26_S_32", "aug_light1-wd_0.1-do_0.0-sd_0.0", 170, "0.01", 83.85, (), ()),
    ("vit_ti16", "Ti_16", "aug_none-wd_0.03-do_0.0-sd_0.0", 37, "0.03", 78.22,
     ("vit_tiny_patch16_224.augreg_in21k",), ("vit_tiny_patch16_384.augreg_in21k_ft_in1k",)),
    ("vit_b32", "B_32", "aug_light1-wd_0.1-do_0.0-sd_0.0", 398, "0.01", 83.59, (), ()),
    ("vit_s32", "S_32", "aug_none-wd_0.1-do_0.0-sd_0.0", 118, "0.01", 79.58, (), ()),
    ("r_vit_ti16", "R_Ti_16", "aug_none-wd_0.03-do_0.0-sd_0.0", 40, "0.03", 75.40,
     ("vit_tiny_r_s16_p8_224.augreg_in21k",), ("vit_tiny_r_s16_p8_384.augreg_in21k_ft_in1k",)),
]


def augreg_file(model: str, run: str, adapt: tuple[str, str, int] | None = None, ds: str = "i21k") -> str:
    """The AugReg file name by index.csv's rule: ``{name}-{ds}-300ep-lr_0.001-{aug..sd}`` for a pretraining
    run, plus ``--{adapt_ds}-steps_20k-lr_{lr}-res_{res}`` for its fine-tune (``adapt``: ds, lr, res)."""
    base = f"augreg/{model}-{ds}-300ep-lr_0.001-{run}"
    if adapt is None:
        return base + ".npz"
    adapt_ds, lr, res = adapt
    return f"{base}--{adapt_ds}-steps_20k-lr_{lr}-res_{res}.npz"


AUGREG = []
for _arch, _model, _run, _mib, _lr, _top1, _pre_alias, _ft_alias in _AUGREG_TABLE:
    AUGREG.append(Pretrained(
        f"{_arch}.augreg_in21k", _arch, "official", augreg_file(_model, _run), "ImageNet-21k", None, 224,
        num_classes=IMAGENET_21K_CLASSES, representation_size=None, size_mib=_mib, top1=None, top1_source=None,
        facts="file, size: README; 21843 classes: TIMM; eval: VIT_JAX", aliases=_pre_alias))
    AUGREG.append(Pretrained(
        f"{_arch}.augreg_in21k_ft_in1k", _arch, "official", augreg_file(_model, _run, ("imagenet2012", _lr, 384)),
        "ImageNet-21k", "ImageNet-1k", 384, num_classes=1000, representation_size=None, size_mib=None,
        top1=_top1, top1_source="README (recommended AugReg table, 384 px)",
        facts="file, top-1: README (its size column is the pretrained file's); eval: VIT_JAX",
        aliases=_ft_alias, class_names="imagenet"))

# AugReg ImageNet fine-tunes at 224 px that timm's pretrained_cfg points at (the cheaper choice on a CPU)
for _arch, _model, _run, _lr, _alias in [
    ("vit_ti16", "Ti_16", "aug_none-wd_0.03-do_0.0-sd_0.0", "0.03", "vit_tiny_patch16_224.augreg_in21k_ft_in1k"),
    ("vit_s16", "S_16", "aug_light1-wd_0.03-do_0.0-sd_0.0", "0.03", "vit_small_patch16_224.augreg_in21k_ft_in1k"),
    ("vit_b16", "B_16", "aug_medium1-wd_0.1-do_0.0-sd_0.0", "0.01", "vit_base_patch16_224.augreg_in21k_ft_in1k"),
    ("vit_s32", "S_32", "aug_light1-wd_0.03-do_0.0-sd_0.0", "0.03", "vit_small_patch32_224.augreg_in21k_ft_in1k"),
    ("vit_b32", "B_32", "aug_medium1-wd_0.03-do_0.0-sd_0.0", "0.03", "vit_base_patch32_224.augreg_in21k_ft_in1k"),
]:
    AUGREG.append(Pretrained(
        f"{_arch}.augreg_in21k_ft_in1k_224", _arch, "official", augreg_file(_model, _run, ("imagenet2012", _lr, 224)),
        "ImageNet-21k", "ImageNet-1k", 224, num_classes=1000, representation_size=None, size_mib=None, top1=None,
        top1_source=None, facts="file: TIMM (timm's pretrained_cfg url); eval: VIT_JAX", aliases=(_alias,),
        class_names="imagenet"))

# -- weights published on the Hugging Face hub only ---------------------------------------------------------
HUB = [
    Pretrained(
        "vit_b16.augreg2_in21k_ft_in1k", "vit_b16", "hf-hub", "model.safetensors", "ImageNet-21k", "ImageNet-1k",
        224, num_classes=1000, representation_size=None, size_mib=None, top1=None, top1_source=None,
        facts="TIMM: timm's own re-fine-tune of the AugReg B/16, hub id timm/<name>, crop_pct 0.9, bicubic",
        hub_repo="timm/vit_base_patch16_224.augreg2_in21k_ft_in1k",
        aliases=("vit_base_patch16_224.augreg2_in21k_ft_in1k",), eval_resize="shorter", eval_crop_pct=0.9,
        eval_interpolation="bicubic", class_names="imagenet"),
]

# -- today's backbones: the registry's DINOv2, SigLIP and CLIP image towers (weights.backbones) -----------------

def _backbone(w: BackboneWeights) -> Pretrained:
    """A backbone's weights as ``ARCH.TAG`` (timm's tag). The file is timm's hub repository, not the
    transformers one: the image tower alone in one model.safetensors (transformers' SigLIP and CLIP
    repositories hold the whole two-tower model, text tower included, and OpenAI's CLIP repositories began as
    pickled .bin files), and there is one for every shape (transformers has no So400m at 378 px). Neither hub
    repository is the authors' own upload: timm's and transformers' are both conversions of the released
    checkpoints, the same weights. What a timm file's shapes cannot say (the activation) and the authors'
    test-time preprocessing and resolution come from the table."""
    timm_name = w.timm.removeprefix("timm/")
    fields = {"mean", "std", "eval_resize", "eval_crop_pct", "eval_interpolation"}  # Pretrained's own
    return Pretrained(
        f"{w.model}.{timm_name.split('.', 1)[1]}", w.model, "hf-hub", "model.safetensors", w.pretrain, None,
        w.img_size, num_classes=w.num_classes, representation_size=None, size_mib=None, top1=None,
        top1_source=None, facts="hub id, preprocessing, data, license: BACKBONES", hub_repo=w.timm,
        aliases=(timm_name, w.timm, *w.timm_aliases, *((w.hf,) if w.hf else ())), mean=w.mean, std=w.std,
        eval_resize=w.eval_resize, eval_crop_pct=w.eval_crop_pct, eval_interpolation=w.eval_interpolation,
        license=w.license,
        overrides=tuple(sorted((k, v) for k, v in w.load_overrides("timm").items() if k not in fields)))


BACKBONES = [_backbone(w) for w in BACKBONE_WEIGHTS.values()]

# -- shipped inside vitlab's package: no download ------------------------------------------------------------
# A training run directory, as `vitlab train` wrote it, trimmed to what using it needs: config.yaml (the
# recipe), final.json (its test result), model/ (config.json + model.safetensors).
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def _shipped(name: str, arch: str, run: str, pretrain: str, dataset: str, img_size: int, num_classes: int,
             aliases: tuple[str, ...]) -> Pretrained:
    final = PACKAGE_DIR / run / "final.json"
    top1 = json.loads(final.read_text())["top1"] if final.is_file() else None
    weights = PACKAGE_DIR / run / "model" / "model.safetensors"
    return Pretrained(
        name, arch, "vitlab", run, pretrain, None, img_size, num_classes=num_classes, representation_size=None,
        size_mib=round(weights.stat().st_size / 2**20, 1) if weights.is_file() else None, top1=top1,
        top1_source=f"final.json of the run (vitlab/pretrained/{run})" if top1 is not None else None,
        facts=f"trained by vitlab (vitlab/pretrained/{run}/config.yaml); top-1: that run's final.json",
        aliases=aliases, dataset=dataset, license="Apache-2.0")


SHIPPED = [_shipped("vit_mnist.fmnist", "vit_mnist", "fmnist", "Fashion-MNIST", "fashion_mnist", 28, 10,
                    ("vitlab/fmnist",))]


@lru_cache(maxsize=1)
def _index() -> dict[str, Pretrained]:
    out: dict[str, Pretrained] = {}
    for e in ORIGINAL + AUGREG + HUB + BACKBONES + SHIPPED:
        for key in (e.name, *e.aliases):
            if key in out:
                raise AssertionError(f"catalog name {key!r} given twice")
            out[key] = e
    return out


def catalog() -> list[Pretrained]:
    """Every entry once (aliases not repeated), in catalog order."""
    return list(dict.fromkeys(_index().values()))


def is_pretrained_name(name: str | os.PathLike) -> bool:
    """Whether ``name`` (a string, or a path object that commands made of one) is a catalog name or alias."""
    return os.fspath(name) in _index() if isinstance(name, (str, os.PathLike)) else False


def get_pretrained(name: str) -> Pretrained:
    """The entry a name or alias means; an unknown name is named with the closest ones."""
    try:
        return _index()[name]
    except KeyError:
        raise ConfigError(f"no pretrained weights named {name!r}{close_names(name)} (`vitlab pretrained` lists "
                          "them)") from None


def close_names(name: str) -> str:
    """``"; did you mean A, B?"`` for catalog names like ``name``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(name, _index(), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def pretrained_for(arch: str, tag: str) -> Pretrained:
    """``create_model(arch, pretrained=tag)``: the entry ``arch.tag``, or ``tag`` itself when it is a full
    name of weights for ``arch``."""
    entry = get_pretrained(tag if is_pretrained_name(tag) else f"{arch}.{tag}")
    if entry.arch != arch:
        raise ConfigError(f"pretrained weights {entry.name!r} are for {entry.arch!r}, not {arch!r}")
    return entry


def list_pretrained(pattern: str = "*") -> list[str]:
    """Catalog names (not aliases) matching a shell-style pattern, in catalog order."""
    return [e.name for e in catalog() if fnmatch.fnmatch(e.name, pattern)]
