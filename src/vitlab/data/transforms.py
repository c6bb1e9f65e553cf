"""Batched preprocessing on uint8 tensors (B, C, H, W), on whatever device the batch lives on.

Why batched: on a 2-core machine a per-sample PIL pipeline competes with the model for the CPU. Here
one affine_grid + grid_sample call does every sample's Inception crop, flip, resize and the geometric
RandAugment ops at once, the colour ops run on index groups of the batch, and everything random comes
from one torch.Generator (drawn on the CPU), so a seeded generator reproduces a batch exactly.

Training resizes bilinear without antialiasing, as tf.image.resize does in the official code; image
folders are stored at a size near the model's (see load_image_folder) so no large reduction happens
there. Test-time resizing is the model's own definition (vitlab.data.preprocess), in EvalTransform.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..utils.size import SizeLike, to_2tuple
from .preprocess import Preprocess
from .sources.images import image_to_array

NORMALIZE: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "minus1_1": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # (x - 127.5) / 127.5: what the official weights expect
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "zero_one": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")


def get_normalize(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of a preset; the names are the keys of NORMALIZE ("[-1,1]" is accepted for minus1_1)."""
    key = "minus1_1" if name in ("[-1,1]", "[-1, 1]") else name.lower().replace("-", "_")
    if key not in NORMALIZE:
        raise ValueError(f"unknown normalisation {name!r}; choose one of {', '.join(NORMALIZE)}")
    return NORMALIZE[key]


def _check_batch(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"expected a uint8 image batch (B, C, H, W), got {got}")


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64) * (hi - lo) + lo


def _to_gray(x: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


class _Normalize:
    """Channel adaptation (gray <-> RGB for a model's in_chans) and (x / 255 - mean) / std."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], in_chans: int | None) -> None:
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3) or min(self.std) <= 0:
            raise ValueError(f"mean/std must both have 1 or 3 values and std > 0, got {self.mean}, {self.std}")
        if in_chans not in (None, 1, 3):
            raise ValueError(f"in_chans must be None, 1 or 3, got {in_chans}")
        self.in_chans = in_chans

    def out_channels(self, c: int) -> int:
        return self.in_chans or c

    def _params(self, c: int, device: torch.device) -> tuple[Tensor, Tensor]:
        mean, std = self.mean, self.std
        if len(mean) != c:
            if len(set(mean)) == 1 and len(set(std)) == 1:  # e.g. minus1_1: the same for any channel count
                mean, std = mean[:1] * c, std[:1] * c
            else:
                raise ValueError(
                    f"mean/std have {len(mean)} values but the images have {c} channel(s); use a 1-value "
                    "normalisation (e.g. 'fashion_mnist' or 'minus1_1') or convert with in_chans=3"
                )
        m = torch.tensor(mean, device=device).view(1, c, 1, 1)
        s = torch.tensor(std, device=device).view(1, c, 1, 1)
        return 1.0 / (255.0 * s), -m / s

    def fill_value(self, c: int) -> Tensor:
        """Pixel value (0..255 scale) that normalises to 0: what geometric ops reveal outside the image
        (averaged over channels when the images' channel count differs from the mean's)."""
        mean = self.mean if len(self.mean) == c else (sum(self.mean) / len(self.mean),) * c
        return 255.0 * torch.tensor(mean).view(1, c, 1, 1)

    def finish(self, x: Tensor) -> Tensor:
        """float (B, C, H, W) in 0..255 -> normalised float32 with `in_chans` channels."""
        c = x.shape[1]
        if self.in_chans == 1 and c == 3:
            x = _to_gray(x)
        elif self.in_chans == 3 and c == 1:
            x = x.expand(-1, 3, -1, -1)
        elif self.in_chans not in (None, c):
            raise ValueError(f"cannot convert {c}-channel images to in_chans={self.in_chans}")
        scale, bias = self._params(x.shape[1], x.device)
        return torch.addcmul(bias, x, scale)


# ------------------------------------------------------------------------------------ RandAugment
GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
COLOR_OPS = ("identity", "autocontrast", "equalize", "invert", "posterize", "solarize", "color", "contrast",
             "brightness", "sharpness")
# timm's "increasing" RandAugment set (magnitude 10 = strongest) minus invert, plus the paper's identity.
DEFAULT_RANDAUGMENT_OPS = ("identity", "autocontrast", "equalize", "rotate", "posterize", "solarize", "color",
                           "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y")


def _blend(x: Tensor, base: Tensor, factor: Tensor) -> Tensor:
    return (base + factor.view(-1, 1, 1, 1) * (x - base)).clamp_(0, 255)


def _autocontrast(x: Tensor) -> Tensor:
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) * (255.0 / span.clamp_min(1e-6)), x)


def _equalize(x: Tensor) -> Tensor:
    """PIL's ImageOps.equalize, for every (sample, channel) histogram at once."""
    b, c, h, w = x.shape
    xi = x.round().clamp_(0, 255).long().view(b * c, h * w)
    hist = torch.zeros(b * c, 256, device=x.device, dtype=torch.long).scatter_add_(1, xi, torch.ones_like(xi))
    last = 255 - torch.argmax((hist.flip(1) > 0).long(), dim=1)
    step = (h * w - hist.gather(1, last[:, None]).squeeze(1)) // 255
    start = torch.cumsum(hist, 1) - hist
    lut = ((start + (step // 2)[:, None]) // step.clamp_min(1)[:, None]).clamp_(max=255)
    out = lut.gather(1, xi).to(x.dtype).view(b, c, h, w)
    return torch.where((step > 0).view(b, c, 1, 1), out, x)


def _sharpen_base(x: Tensor) -> Tensor:
    """PIL's SMOOTH filter (3x3, centre weight 5) with the one-pixel border left as is."""
    c = x.shape[1]
    k = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    k[1, 1] = 5.0
    k = (k / 13.0).expand(c, 1, 3, 3)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = F.conv2d(x, k, groups=c)
    return out


def _color_op(name: str, x: Tensor, v: Tensor, magnitude: float) -> Tensor:
    """Apply one colour op to x (b, C, H, W) in 0..255; v is the signed per-sample strength in [-1, 1]."""
    m = magnitude / 10.0
    if name == "identity":
        return x
    if name == "autocontrast":
        return _autocontrast(x)
    if name == "equalize":
        return _equalize(x)
    if name == "invert":
        return 255.0 - x
    if name == "posterize":
        step = 2.0 ** int(m * 4)  # keep 8 - int(4m) bits
        return torch.floor(x.round() / step) * step
    if name == "solarize":
        return torch.where(x >= 256.0 - m * 256.0, 255.0 - x, x)
    factor = 1.0 + 0.9 * v
    if name == "brightness":
        return _blend(x, torch.zeros_like(x), factor)
    if name == "contrast":
        return _blend(x, _to_gray(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x), factor)
    if name == "color":
        return _blend(x, _to_gray(x).expand_as(x), factor)
    if name == "sharpness":
        return _blend(x, _sharpen_base(x), factor)
    raise ValueError(f"unknown RandAugment op {name!r}")


def _geometric_matrices(ops: tuple[str, ...], choice: Tensor, v: Tensor, h: int, w: int) -> Tensor:
    """(b, 3, 3) output->source maps in normalised [-1, 1] coordinates for one RandAugment slot.

    choice indexes `ops` per sample, v is the signed strength; samples whose op is not geometric get the
    identity. Built in centred pixel units (a rotation stays a rotation on a non-square image), then
    conjugated with diag(w/2, h/2, 1) into normalised units."""

    def strength(name: str) -> Tensor:
        return v * (choice == ops.index(name)) if name in ops else torch.zeros_like(v)

    ang = torch.deg2rad(30.0 * strength("rotate"))
    a = torch.zeros(len(v), 3, 3, dtype=torch.float64)
    a[:, 0, 0] = a[:, 1, 1] = ang.cos()
    a[:, 0, 1] = (-ang.sin() + 0.3 * strength("shear_x")) * (h / w)
    a[:, 1, 0] = (ang.sin() + 0.3 * strength("shear_y")) * (w / h)
    a[:, 0, 2] = 0.9 * strength("translate_x")  # 45% of the width, in units of half the width
    a[:, 1, 2] = 0.9 * strength("translate_y")
    a[:, 2, 2] = 1.0
    return a


def crop_draws(b: int, scale: tuple[float, float], ratio: tuple[float, float], g: torch.Generator | None,
               tries: int = 10) -> Tensor:
    """The random numbers of b Inception crops, (b, 2 * tries + 2): area shares in `scale`, log aspects in
    `ratio`, then the position; they do not depend on the image's size (see crop_boxes)."""
    area = _uniform(b * tries, *scale, g).view(b, tries)
    log_r = _uniform(b * tries, math.log(ratio[0]), math.log(ratio[1]), g).view(b, tries)
    u = torch.rand(b, 2, generator=g, dtype=torch.float64)
    return torch.cat([area, log_r, u], 1)


def crop_boxes(h: Tensor, w: Tensor, draws: Tensor, ratio: tuple[float, float]) -> Tensor:
    """(b, 4) Inception crop boxes (top, left, height, width) in pixels of images of sizes h x w (each (b,)), as
    torchvision's RandomResizedCrop: the first of the tries whose area share and aspect fit, else the whole
    image clamped to the ratio range, centred. The batched transform (one size) and the per-sample pipeline
    (each image its own size) both call it."""
    tries = (draws.shape[1] - 2) // 2
    h, w = h.double(), w.double()
    area = (h * w)[:, None] * draws[:, :tries]
    aspect = draws[:, tries : 2 * tries].exp()
    cw = torch.sqrt(area * aspect).round()
    ch = torch.sqrt(area / aspect).round()
    ok = (cw > 0) & (cw <= w[:, None]) & (ch > 0) & (ch <= h[:, None])
    first = torch.argmax(ok.long(), dim=1, keepdim=True)
    cw, ch, found = cw.gather(1, first)[:, 0], ch.gather(1, first)[:, 0], ok.any(1)
    fw = torch.where(w / h > ratio[1], torch.round(h * ratio[1]), w)
    fh = torch.where(w / h < ratio[0], torch.round(w / ratio[0]), h)
    cw, ch = torch.where(found, cw, fw), torch.where(found, ch, fh)
    u = draws[:, 2 * tries :]
    top = torch.where(found, torch.floor(u[:, 0] * (h - ch + 1)), torch.floor((h - fh) / 2))
    left = torch.where(found, torch.floor(u[:, 1] * (w - cw + 1)), torch.floor((w - fw) / 2))
    return torch.stack([top, left, ch, cw], 1)


class TrainTransform:
    """Inception crop + horizontal flip + resize (+ shift, RandAugment, random erasing) + normalise, batched.

    scale: range of the crop's area as a fraction of the image (paper: 5%-100%); ratio: aspect range.
    randaugment=(num_ops, magnitude): each sample gets num_ops ops drawn from `ops` at the fixed
    magnitude (0-10, timm's "increasing" scale) with a random sign; geometric ops are folded into the
    crop's affine map (so they are applied before the colour ops), pixels from outside the image take
    `fill` (None: the value that normalises to 0). random_erasing: probability of one erased box per
    sample (area 2%-33%), filled with normal noise after normalisation, as timm does.
    translate: shift each output by a whole number of pixels drawn uniformly from [-translate, translate]
    per axis, uncovered pixels taking `fill` (CIFAR's pad-and-random-crop; whole pixels, so no resampling blur).
    in_chans converts gray <-> RGB for a model that expects the other. crop=False: the images were
    Inception-cropped, flipped and resized per sample already (streamed data); the rest happens here.
    """

    def __init__(
        self,
        img_size: SizeLike,
        scale: tuple[float, float] = (0.05, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
        mean: Sequence[float] = NORMALIZE["minus1_1"][0],
        std: Sequence[float] = NORMALIZE["minus1_1"][1],
        randaugment: tuple[int, int] | None = None,
        random_erasing: float = 0.0,
        ops: Sequence[str] = DEFAULT_RANDAUGMENT_OPS,
        fill: float | None = None,
        in_chans: int | None = None,
        translate: int = 0,
        crop: bool = True,
    ) -> None:
        self.img_size = to_2tuple(img_size, "img_size")
        if not 0 <= translate < min(self.img_size):
            raise ValueError(f"translate must be a whole number of pixels in [0, {min(self.img_size)}), got {translate}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
        if randaugment is not None and (randaugment[0] < 1 or not 0 <= randaugment[1] <= 10):
            raise ValueError(f"randaugment=(num_ops >= 1, magnitude in [0, 10]), got {randaugment}")
        unknown = [o for o in ops if o not in GEOMETRIC_OPS + COLOR_OPS]
        if unknown or not ops:
            raise ValueError(f"unknown RandAugment ops {unknown}; available: {', '.join(GEOMETRIC_OPS + COLOR_OPS)}")
        if not 0.0 <= random_erasing <= 1.0:
            raise ValueError(f"random_erasing is a probability in [0, 1], got {random_erasing}")
        self.scale, self.ratio, self.flip = tuple(scale), tuple(ratio), flip
        self.randaugment, self.ops, self.fill = randaugment, tuple(ops), fill
        self.random_erasing, self.translate, self.crop = random_erasing, int(translate), crop
        self.norm = _Normalize(mean, std, in_chans)

    def crop_params(self, b: int, h: int, w: int, g: torch.Generator | None) -> Tensor:
        """(b, 4) crop boxes (top, left, height, width) in pixels of b images of h x w: see crop_boxes."""
        draws = crop_draws(b, self.scale, self.ratio, g)
        return crop_boxes(torch.full((b,), h), torch.full((b,), w), draws, self.ratio)

    def _affine(self, b: int, h: int, w: int, g: torch.Generator | None) -> Tensor:
        """(b, 3, 3) output->source map in normalised coordinates: crop, then flip, then shift. Without
        `crop` (streamed data, cropped and flipped per sample by vitlab.data.pipeline) only the shift."""
        if not self.crop:
            theta = torch.eye(3, dtype=torch.float64).repeat(b, 1, 1)
        else:
            top, left, ch, cw = self.crop_params(b, h, w, g).unbind(1)
            theta = torch.zeros(b, 3, 3, dtype=torch.float64)
            theta[:, 0, 0], theta[:, 0, 2] = cw / w, (2 * left + cw) / w - 1
            theta[:, 1, 1], theta[:, 1, 2] = ch / h, (2 * top + ch) / h - 1
            theta[:, 2, 2] = 1
        if self.flip and self.crop:
            flip = torch.rand(b, generator=g) < 0.5
            theta[:, 0, 0] = torch.where(flip, -theta[:, 0, 0], theta[:, 0, 0])
        if self.translate:
            oh, ow = self.img_size
            shift = torch.randint(-self.translate, self.translate + 1, (b, 2), generator=g).double()
            move = torch.eye(3, dtype=torch.float64).repeat(b, 1, 1)
            move[:, 0, 2], move[:, 1, 2] = 2 * shift[:, 0] / ow, 2 * shift[:, 1] / oh
            theta = theta @ move
        return theta

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(images)
        g = generator
        b, c, h, w = images.shape
        oh, ow = self.img_size
        theta = self._affine(b, h, w, g)
        ops = tuple(o for o in self.ops if o != "color" or c == 3)  # saturation means nothing on gray
        plan: list[tuple[str, Tensor, Tensor]] = []  # (op, sample indices, signed strength) per slot
        geometric = self.translate > 0  # shifted-in pixels take the fill value
        if self.randaugment is not None:
            n_ops, magnitude = self.randaugment
            choice = torch.randint(len(ops), (b, n_ops), generator=g)
            sign = torch.where(torch.rand(b, n_ops, generator=g) < 0.5, -1.0, 1.0).double() * (magnitude / 10.0)
            geo = torch.tensor([o in GEOMETRIC_OPS for o in ops])[choice]
            for k in range(n_ops):
                if geo[:, k].any():
                    theta = theta @ _geometric_matrices(ops, choice[:, k], sign[:, k], oh, ow)
                    geometric = True
                for i, name in enumerate(ops):
                    idx = (choice[:, k] == i).nonzero().flatten()
                    if len(idx) and name in COLOR_OPS and name != "identity":
                        plan.append((name, idx, sign[idx, k]))
        dev = images.device
        x = images.float()
        if (oh, ow) != (h, w) or not torch.equal(theta, _identity_like(theta)):
            grid = F.affine_grid(theta[:, :2].float().to(dev), [b, c, oh, ow], align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
            if geometric:
                outside = (grid.abs().amax(-1, keepdim=True) > 1.0 + 1e-6).permute(0, 3, 1, 2)
                fill = self.norm.fill_value(c) if self.fill is None else torch.full((1, c, 1, 1), float(self.fill))
                x = torch.where(outside, fill.to(dev, x.dtype), x)
        for name, idx, v in plan:
            idx_d = idx.to(dev)
            x[idx_d] = _color_op(name, x[idx_d], v.float().to(dev), self.randaugment[1])
        x = self.norm.finish(x)
        if self.random_erasing > 0:
            x = self._erase(x, g)
        return x

    def _erase(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, c, h, w = x.shape
        hit = (torch.rand(b, generator=g) < self.random_erasing).nonzero().flatten()
        n = len(hit)
        if not n:
            return x
        area = h * w * _uniform(n, 0.02, 1 / 3, g)
        r = _uniform(n, math.log(0.3), math.log(1 / 0.3), g).exp()
        eh = torch.sqrt(area * r).round().clamp(1, h)
        ew = torch.sqrt(area / r).round().clamp(1, w)
        u = torch.rand(n, 2, generator=g, dtype=torch.float64)
        top, left = torch.floor(u[:, 0] * (h - eh + 1)), torch.floor(u[:, 1] * (w - ew + 1))
        noise = torch.randn(n, c, h, w, generator=g).to(x.device)
        ys = torch.arange(h, dtype=torch.float64).view(1, h, 1)
        xs = torch.arange(w, dtype=torch.float64).view(1, 1, w)
        box = ((ys >= top.view(-1, 1, 1)) & (ys < (top + eh).view(-1, 1, 1))
               & (xs >= left.view(-1, 1, 1)) & (xs < (left + ew).view(-1, 1, 1))).unsqueeze(1).to(x.device)
        hit_d = hit.to(x.device)
        x = x.clone()
        x[hit_d] = torch.where(box, noise, x[hit_d])
        return x


def _identity_like(theta: Tensor) -> Tensor:
    return torch.eye(3, dtype=theta.dtype).expand_as(theta)


class EvalTransform:
    """Test-time preprocessing: the model's Preprocess (resize, centre crop), then normalisation.

    ``preprocess``: a Preprocess, or an image size for the default one (the whole image resized,
    bilinear). ``EvalTransform.for_model(cfg)`` builds the one a model's metadata defines; calling it
    on a uint8 batch and ``image`` on one PIL image give the same model input (up to resize_batch's
    rounding, see vitlab.data.preprocess)."""

    def __init__(
        self,
        preprocess: Preprocess | SizeLike,
        mean: Sequence[float] = NORMALIZE["minus1_1"][0],
        std: Sequence[float] = NORMALIZE["minus1_1"][1],
        in_chans: int | None = None,
    ) -> None:
        self.preprocess = preprocess if isinstance(preprocess, Preprocess) else Preprocess(preprocess)
        self.img_size = self.preprocess.img_size
        self.norm = _Normalize(mean, std, in_chans)

    @classmethod
    def for_model(cls, cfg: Any) -> EvalTransform:
        """What a model config (ViTConfig, ResNetConfig) says its inputs are: Preprocess, mean, std, in_chans."""
        return cls(Preprocess.from_config(cfg), cfg.mean, cfg.std, in_chans=cfg.in_chans)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """uint8 (B, C, H, W) of any size -> normalised float32 at img_size. ``generator`` is accepted (and
        unused) so train and eval transforms are interchangeable."""
        return self.normalize(self.preprocess.resize_batch(images))

    def normalize(self, images: Tensor) -> Tensor:
        """A batch already at img_size (uint8, or float in 0..255; e.g. from Preprocess.resize_pil) ->
        normalised float32, channels converted to in_chans."""
        if tuple(images.shape[-2:]) != self.img_size:
            raise ValueError(f"images of size {tuple(images.shape[-2:])} given to normalize(); it takes images "
                             f"already at {self.img_size}: call the transform itself to resize them")
        return self.norm.finish(images.float())

    def image(self, img: Image.Image) -> Tensor:
        """One PIL image (any mode or size) -> normalised float32 (C, H, W): converted to in_chans channels
        (alpha on white, see image_to_array), Preprocess.resize_pil, normalised."""
        arr = np.asarray(self.preprocess.resize_pil(Image.fromarray(image_to_array(img, self.norm.in_chans))))
        t = torch.from_numpy(arr.reshape(*arr.shape[:2], -1).copy()).permute(2, 0, 1)[None]
        return self.normalize(t)[0]


# ------------------------------------------------------------------------------------------ mixup
def smooth_one_hot(y: Tensor, num_classes: int, smoothing: float = 0.0) -> Tensor:
    """One-hot targets with label smoothing: 1 - s + s/K on the label, s/K elsewhere (rows sum to 1)."""
    off = smoothing / num_classes
    out = torch.full((len(y), num_classes), off, device=y.device)
    return out.scatter_(1, y.view(-1, 1).long(), 1.0 - smoothing + off)


class Mixup:
    """Mixup / CutMix on a normalised batch, one lambda per batch (timm's "batch" mode), partner = the
    reversed batch. With prob, switch to CutMix with switch_prob when both alphas are > 0; the CutMix
    lambda is corrected to the box's true area. Returns soft targets (B, num_classes) that sum to 1."""

    def __init__(
        self,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.0,
        num_classes: int = 1000,
    ) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"alphas must be >= 0, got mixup {mixup_alpha}, cutmix {cutmix_alpha}")
        if not (0 <= prob <= 1 and 0 <= switch_prob <= 1 and 0 <= label_smoothing < 1):
            raise ValueError("prob and switch_prob must be in [0, 1], label_smoothing in [0, 1)")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob = prob, switch_prob
        self.label_smoothing, self.num_classes = label_smoothing, num_classes

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"expected x (B, C, H, W) and y (B,), got {tuple(x.shape)} and {tuple(y.shape)}")
        target = smooth_one_hot(y, self.num_classes, self.label_smoothing)
        active = self.mixup_alpha > 0 or self.cutmix_alpha > 0
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        rng = np.random.default_rng(seed)  # numpy for Beta draws; seeded from the torch generator
        if not active or rng.random() >= self.prob:
            return x, target
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or rng.random() < self.switch_prob)
        lam = float(rng.beta(*(2 * [self.cutmix_alpha if use_cutmix else self.mixup_alpha])))
        if use_cutmix:
            h, w = x.shape[-2:]
            cut = math.sqrt(1.0 - lam)
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
            y0, y1 = max(cy - int(h * cut) // 2, 0), min(cy + int(h * cut) // 2, h)
            x0, x1 = max(cx - int(w * cut) // 2, 0), min(cx + int(w * cut) // 2, w)
            x = x.clone()
            x[:, :, y0:y1, x0:x1] = x.flip(0)[:, :, y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
        else:
            x = x * lam + x.flip(0) * (1.0 - lam)
        return x, target * lam + target.flip(0) * (1.0 - lam)
