"""The Vision Transformer of "An Image is Worth 16x16 Words" (Dosovitskiy et al., 2020), top to bottom.

    image (B, C, H, W)
      -> PatchEmbed: P x P patches, flattened and linearly embedded (a conv with kernel = stride = P)
      -> prepend the learnable class token, add position embeddings, dropout
      -> depth x Block: x + Attention(LN(x)); x + MLP(LN(x))       (pre-LN, eq. 2-3 of the paper)
      -> final LayerNorm
      -> class token (or mean over patches, "gap", or attention pool, "map") -> optional pre-logits Dense+tanh -> head

Details follow Google's official code rather than the prose where they differ: LayerNorm eps 1e-6,
tanh-approximated GELU, separate-but-fused q/k/v projections with bias, dropout after every dense
layer but q/k/v, zero-initialised head. Foreign checkpoint layouts live in ``vitlab.weights``; this
file knows only its own parameters.

Today's descendants are the same model with a few switches, each a ViTConfig field that defaults to
the 2020 behaviour (registry.py names the common shapes):

- register tokens after the class token (DINOv2 ``reg4``; Darcet et al. 2023, "Vision Transformers
  Need Registers"), and position embeddings that skip the class and register tokens (``no_embed_class``);
- LayerScale: a learned per-channel scale on each residual branch (CaiT; DINOv2), ``init_values``;
- a LayerNorm on the embedded tokens before the first block (CLIP's ``ln_pre``), ``pre_norm``, and a
  patch projection without bias (CLIP), ``patch_bias``;
- QK-norm: LayerNorm over each head's queries and keys (``qk_norm``);
- ``act``: OpenAI CLIP's quick-GELU and DINOv2-g's SwiGLU MLP besides GELU;
- ``classifier="map"``: multi-head attention pooling with a learned query (SigLIP's "MAP" head)
  instead of a class token or the mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..utils.eval_fields import check_fields
from ..utils.size import Size, to_2tuple
from . import attn_kernel
from .hybrid import HybridEmbed
from .layers import ConfigDict, check_image, lecun_normal_
from .pos_embed import RESAMPLE_METHODS, resample_axis, resample_pos_embed, sincos_2d
from .pretrained import save_pretrained

CLASSIFIERS = ("token", "gap", "map")
POS_EMBEDS = ("learn", "learn2d", "sincos", "none")


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): OpenAI CLIP's approximation of GELU, which its weights were trained with."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"gelu_tanh": lambda: nn.GELU(approximate="tanh"), "gelu": nn.GELU, "relu": nn.ReLU,
               "quick_gelu": QuickGELU, "swiglu": nn.SiLU}
GATED = ("swiglu",)  # gated MLPs: fc1 makes 2 * mlp_dim, act(first half) * second half goes to fc2


@dataclass
class ViTConfig(ConfigDict):
    """Everything needed to rebuild a model; saved as config.json next to its weights."""

    img_size: Size = (224, 224)
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    classifier: str = "token"  # "token": class token; "gap": global average pool; "map": attention pool (SigLIP)
    pos_embed: str = "learn"  # "learn" (1-D, paper default), "learn2d", "sincos", "none"
    representation_size: int | None = None  # pre-logits Dense + tanh (ImageNet-21k pretraining)
    drop_rate: float = 0.0  # dropout after dense layers and the position embeddings
    attn_drop_rate: float = 0.0  # dropout on the attention probabilities
    drop_path_rate: float = 0.0  # stochastic depth, rising linearly to this rate in the last block
    patch_drop_rate: float = 0.0  # training only: drop this share of patch tokens (PatchDropout, timm's name)
    # MLP activation: "gelu_tanh" (official checkpoints), "gelu" (exact: timm, HF), "relu", "quick_gelu" (OpenAI CLIP),
    # "swiglu" (DINOv2 g: SiLU-gated, fc1 twice mlp_dim wide)
    act: str = "gelu_tanh"  # "gelu_tanh", "gelu", "relu", "quick_gelu" or "swiglu" (see above)
    norm_eps: float = 1e-6  # LayerNorm epsilon (official 1e-6; HF configs may say 1e-12)
    head_bias_init: float = 0.0  # the official pretraining head uses -10 with sigmoid cross-entropy
    dynamic_img_size: bool = False  # accept any input size that is a multiple of the patch
    pos_resample: str = "official"  # method for set_input_size / dynamic sizes (see pos_embed.py)
    reg_tokens: int = 0  # register tokens after the class token (DINOv2 reg4: 4), read by no classifier
    no_embed_class: bool = False  # learned position embeddings cover the patches only, not class/register tokens
    init_values: float | None = None  # LayerScale: per-channel scale on each residual branch, initialised to this
    pre_norm: bool = False  # LayerNorm on the embedded tokens before the first block (CLIP's ln_pre)
    patch_bias: bool = True  # bias in the patch projection (CLIP's has none)
    qk_norm: bool = False  # LayerNorm over each head's queries and keys before their dot products
    # ResNet hybrid (section 3.1 "Hybrid Architecture"): stage depths of a BiT ResNet whose feature
    # map is cut into patch_size x patch_size patches (1 for the paper's hybrids). None: plain ViT.
    backbone_layers: tuple[int, ...] | None = None
    backbone_width: int = 1  # hybrid ResNet width multiplier
    # Metadata that travels with the weights: what the inputs must look like and what outputs mean.
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)  # input normalisation (x/255 - mean) / std, per channel
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    class_names: tuple[str, ...] | None = None  # what each output means; set by training
    # How a test image of any size becomes the input (vitlab.data.Preprocess): what eval, predict, serve,
    # fewshot, analyze and an ONNX export use, so they all reproduce the evaluation a run reported.
    eval_resize: str = "whole"  # "whole": the whole image to img_size (official ViT); "shorter": aspect kept, centre crop
    eval_crop_pct: float = 1.0  # the centre crop keeps this share of the image scaled to img_size / eval_crop_pct
    eval_interpolation: str = "bilinear"  # "bilinear" or "bicubic" (PIL's filters, antialiased when reducing)

    def __post_init__(self) -> None:
        self.img_size = to_2tuple(self.img_size, "img_size")
        if self.backbone_layers is not None:
            self.backbone_layers = tuple(self.backbone_layers)
        if self.class_names is not None:
            self.class_names = tuple(self.class_names)
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        self.validate()

    def switches(self) -> list[str]:
        """The post-2020 switches this config turns on, in words (the model table, `vitlab info`)."""
        on = [f"{self.reg_tokens} registers" if self.reg_tokens else "",
              "no class position embedding" if self.no_embed_class else "",
              "LayerScale" if self.init_values is not None else "",
              "MAP head" if self.classifier == "map" else "", "pre-norm" if self.pre_norm else "",
              "" if self.patch_bias else "no patch bias", "QK-norm" if self.qk_norm else "",
              self.act if self.act in ("swiglu", "quick_gelu") else ""]
        return [s for s in on if s]

    def validate(self) -> None:
        """Refuse inconsistent settings now, with a message naming the field, not deep inside forward()."""
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier={self.classifier!r} is not one of {CLASSIFIERS}")
        if self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"pos_embed={self.pos_embed!r} is not one of {POS_EMBEDS}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"act={self.act!r} is not one of {tuple(ACTIVATIONS)}")
        if self.pos_resample not in RESAMPLE_METHODS:
            raise ValueError(f"pos_resample={self.pos_resample!r} is not one of {RESAMPLE_METHODS}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.pos_embed == "learn2d" and self.embed_dim % 2:
            raise ValueError(f"pos_embed='learn2d' needs an even embed_dim, got {self.embed_dim}")
        if self.patch_size < 1 or self.depth < 0 or self.num_classes < 0 or self.reg_tokens < 0:
            raise ValueError("patch_size must be >= 1, depth, num_classes and reg_tokens >= 0")
        if self.class_names is not None and self.num_classes and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class_names given for num_classes={self.num_classes}")
        for name in ("drop_rate", "attn_drop_rate", "drop_path_rate", "patch_drop_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1)")
        check_fields("eval_", self.eval_resize, self.eval_crop_pct, self.eval_interpolation)



# ----------------------------------------------------------------------------------------------------
# Patch embedding: "reshape the image into a sequence of flattened 2D patches ... map to D dimensions
# with a trainable linear projection". A conv with kernel = stride = P is exactly that linear map.


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.patch_size = cfg.patch_size
        self.img_size = cfg.img_size
        self.strict_img_size = not cfg.dynamic_img_size
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size, bias=cfg.patch_bias)

    def grid_size(self, img_size: Size) -> Size:
        h, w = img_size
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(
                f"input size {h}x{w} is not divisible by the patch size {p}; resize or crop the image to a "
                f"multiple of {p}"
            )
        return (h // p, w // p)

    def forward(self, x: Tensor) -> tuple[Tensor, Size]:
        """(B, C, H, W) -> tokens (B, h*w, D) in row-major order, and the grid (h, w)."""
        check_image(x, self.proj.in_channels)
        if self.strict_img_size and tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(
                f"input size {tuple(x.shape[-2:])} does not match the model's img_size {self.img_size}; "
                "call model.set_input_size(...) or create the model with dynamic_img_size=True"
            )
        grid = self.grid_size(tuple(x.shape[-2:]))
        (B, C, _, _), (h, w), P = x.shape, grid, self.patch_size
        # The conv's weights, applied as the matmul they are: (B, h*w, C*P*P) patches x (C*P*P, D). Same
        # function as self.proj(x); on the CPU the matmul and its backward cost a fraction of the conv's.
        patches = x.reshape(B, C, h, P, w, P).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C * P * P)
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias), grid


# ----------------------------------------------------------------------------------------------------
# Transformer encoder (Vaswani et al.) in its pre-LN form.


def cut_key_bias(bias: Tensor, keys: slice) -> Tensor:
    """``bias`` with its key part (``keys``) cut from the gradient.

    Adding one vector to every key adds q . b_k to all of a query's scores, which softmax ignores: the
    key bias's gradient is exactly zero, and what backward computes for it is rounding noise. Adam
    divides that noise by its own running size, so it would move the key bias by lr-sized steps whose
    sign depends on the summation order of the machine and process count. Detaching it gives the zero
    exact arithmetic gives (the key bias keeps its initial or loaded value; it has no weight decay) and
    changes no forward value: the concatenation holds the same numbers as the parameter. Not so under
    QK-norm: the keys are normalised after the bias is added, so the bias changes the scores.
    """
    if not (torch.is_grad_enabled() and bias.requires_grad):
        return bias
    return torch.cat([bias[: keys.start], bias[keys].detach(), bias[keys.stop :]])


class Attention(nn.Module):
    """Multi-head self-attention; q, k and v are one fused Linear (same maths as three, one matmul).

    ``impl``: "explicit" (matmul + softmax), "sdpa" (torch's scaled_dot_product_attention) or "auto"
    (whichever a one-time probe found faster for the shape here; see attn_kernel.py). All compute the
    same function. Attention maps always take the explicit path. ``qk_norm``: LayerNorm (eps ``eps``)
    over each head's queries and keys, as ViT-22B and newer recipes do to keep the logits bounded.
    """

    impl = "auto"

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 qk_norm: bool = False, eps: float = 1e-6):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=eps) if qk_norm else None
        self.k_norm = nn.LayerNorm(self.head_dim, eps=eps) if qk_norm else None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def qkv_bias(self) -> Tensor:
        """The fused q/k/v bias, its key part cut from the gradient unless QK-norm follows (see cut_key_bias)."""
        b = self.qkv.bias
        if self.k_norm is not None:
            return b
        D = b.shape[0] // 3
        return cut_key_bias(b, slice(D, 2 * D))

    def forward(self, x: Tensor, return_attention: bool = False,
                num_queries: int | None = None) -> tuple[Tensor, Tensor | None]:
        """``num_queries``: only the first that many tokens attend and get an output (the others still
        serve as keys and values); a classifier that reads the class token needs no more in the last block."""
        B, N, D = x.shape
        H, Dh = self.num_heads, self.head_dim
        w, b = self.qkv.weight, self.qkv_bias()
        if num_queries is None:
            # (B, N, 3 * D) -> q, k, v as (B, heads, N, head_dim) strided views of the one qkv output.
            q, k, v = F.linear(x, w, b).view(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            q = F.linear(x[:, :num_queries], w[:D], b[:D]).view(B, num_queries, H, Dh).transpose(1, 2)
            k, v = F.linear(x, w[D:], b[D:]).view(B, N, 2, H, Dh).permute(2, 0, 3, 1, 4).unbind(0)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        out, attn = attend(q, k, v, self.scale, self.impl, self.attn_drop, self.training, return_attention)
        out = self.proj(out.transpose(1, 2).reshape(B, q.shape[2], D))
        return self.proj_drop(out), attn


def attend(q: Tensor, k: Tensor, v: Tensor, scale: float, impl: str, drop: float, training: bool,
           return_attention: bool) -> tuple[Tensor, Tensor | None]:
    """softmax(q k^T * scale) v per head, by the kernel ``impl`` picks; the probabilities when asked."""
    drop = drop if training else 0.0
    if return_attention or attn_kernel.choose(impl, q, k) == "explicit":
        out, attn = attn_kernel.explicit_attention(q, k, v, scale, drop, training)
        return out, attn if return_attention else None
    return attn_kernel.sdpa_attention(q, k, v, scale, drop), None


class Mlp(nn.Module):
    """Dense, activation, Dense. A gated activation (SwiGLU) makes fc1 twice as wide and multiplies the
    activated first half by the second (Shazeer 2020, "GLU Variants Improve Transformer")."""

    def __init__(self, dim: int, hidden: int, act: str, drop: float = 0.0):
        super().__init__()
        self.gated = act in GATED
        self.fc1 = nn.Linear(dim, 2 * hidden if self.gated else hidden)
        self.act = ACTIVATIONS[act]()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc1(x)
        if self.gated:
            gate, x = x.chunk(2, dim=-1)
            x = self.act(gate) * x
        else:
            x = self.act(x)
        return self.drop2(self.fc2(self.drop1(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's whole residual branch with probability p (rescaled otherwise)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class PatchDropout(nn.Module):
    """Keep a random subset of the patch tokens of each image while training (Liu et al. 2022, "PatchDropout").

    Attention and MLP cost scale with the token count, so dropping half the patches roughly halves a
    training step; evaluation sees every token. Prefix tokens (the class token) are always kept.
    """

    def __init__(self, p: float = 0.0, num_prefix_tokens: int = 1):
        super().__init__()
        self.p = p
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        prefix, patches = x[:, : self.num_prefix_tokens], x[:, self.num_prefix_tokens :]
        B, N, D = patches.shape
        keep = max(1, round(N * (1.0 - self.p)))
        idx = torch.rand(B, N, device=x.device).argsort(dim=1)[:, :keep]
        patches = patches.gather(1, idx.unsqueeze(-1).expand(-1, -1, D))
        return torch.cat([prefix, patches], dim=1) if self.num_prefix_tokens else patches

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerScale(nn.Module):
    """A learned per-channel scale of a residual branch (Touvron et al. 2021, "Going deeper with Image
    Transformers"), started small so that each block begins close to the identity. DINOv2 uses it."""

    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig, drop_path: float = 0.0):
        super().__init__()
        D = cfg.embed_dim
        self.norm1 = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.attn = Attention(D, cfg.num_heads, attn_drop=cfg.attn_drop_rate, proj_drop=cfg.drop_rate,
                              qk_norm=cfg.qk_norm, eps=cfg.norm_eps)
        self.ls1 = LayerScale(D, cfg.init_values) if cfg.init_values is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.mlp = Mlp(D, cfg.mlp_dim, cfg.act, drop=cfg.drop_rate)
        self.ls2 = LayerScale(D, cfg.init_values) if cfg.init_values is not None else nn.Identity()
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, return_attention: bool = False,
                num_queries: int | None = None) -> tuple[Tensor, Tensor | None]:
        """``num_queries``: output only the first that many tokens (see Attention)."""
        y, attn = self.attn(self.norm1(x), return_attention, num_queries)
        if num_queries is not None:
            x = x[:, :num_queries]
        x = x + self.drop_path(self.ls1(y))
        x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
        return x, attn


class AttentionPool(nn.Module):
    """Multi-head attention pooling ("MAP", Lee et al. 2019; SigLIP's head): a learned query attends over
    the patch tokens, then a residual MLP, as a transformer block whose only query is the latent.

        latent -> q; tokens -> k, v; y = proj(attention); y + MLP(LN(y))  -> (B, D)
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        D = cfg.embed_dim
        self.num_heads = cfg.num_heads
        self.latent = nn.Parameter(torch.empty(1, 1, D))
        self.q = nn.Linear(D, D)
        self.kv = nn.Linear(D, 2 * D)
        self.proj = nn.Linear(D, D)
        self.norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.mlp = Mlp(D, cfg.mlp_dim, cfg.act)

    def forward(self, x: Tensor, return_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        """Tokens (B, N, D) -> pooled (B, D), and the latent's attention (B, heads, 1, N) when asked."""
        B, N, D = x.shape
        H = self.num_heads
        q = self.q(self.latent).view(1, 1, H, D // H).transpose(1, 2).expand(B, -1, -1, -1)
        kv_bias = cut_key_bias(self.kv.bias, slice(0, D))  # the key bias's exact gradient is zero here too
        k, v = F.linear(x, self.kv.weight, kv_bias).view(B, N, 2, H, D // H).permute(2, 0, 3, 1, 4).unbind(0)
        y, attn = attend(q, k, v, (D // H) ** -0.5, Attention.impl, 0.0, self.training, return_attention)
        y = self.proj(y.transpose(1, 2).reshape(B, 1, D))
        y = y + self.mlp(self.norm(y))
        return y[:, 0], attn


class PreLogits(nn.Module):
    """The representation layer of ImageNet-21k pretraining: Dense + tanh, dropped when fine-tuning."""

    def __init__(self, dim: int, representation_size: int):
        super().__init__()
        self.fc = nn.Linear(dim, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.fc(x))


class Intermediates(NamedTuple):
    """What ``forward_intermediates`` returns: final normed tokens, per-block tokens, per-block attention,
    and for a "map" classifier the pooling query's attention over the patches."""

    features: Tensor  # (B, prefix + h*w, D) after the final norm
    tokens: list[Tensor]  # per requested block, (B, prefix + h*w, D)
    attentions: list[Tensor] | None  # per requested block, (B, heads, tokens, tokens), when asked
    grid_size: Size
    pool_attention: Tensor | None = None  # "map" classifier, when attention is asked: (B, heads, 1, h*w)


# ----------------------------------------------------------------------------------------------------
# The whole model.


class VisionTransformer(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.embed_dim
        self.patch_embed = build_patch_embed(cfg)
        token = cfg.classifier == "token"
        # Tokens before the patches: the class token, then the registers (extra learned tokens the model may
        # use as scratch space, so that it stops repurposing background patches for it; read by nothing).
        self.num_prefix_tokens = int(token) + cfg.reg_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if token else None
        self.reg_token = nn.Parameter(torch.zeros(1, cfg.reg_tokens, D)) if cfg.reg_tokens else None
        # How many prefix tokens own an entry of the learned 1-D position embedding (the rest get none).
        self.num_pos_prefix = 0 if cfg.no_embed_class else self.num_prefix_tokens
        self._init_pos_embed(self.patch_embed.grid_size(cfg.img_size))
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        self.patch_drop = PatchDropout(cfg.patch_drop_rate, self.num_prefix_tokens)
        self.norm_pre = nn.LayerNorm(D, eps=cfg.norm_eps) if cfg.pre_norm else None
        rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]  # linear rule
        self.blocks = nn.ModuleList(Block(cfg, r) for r in rates)
        self.norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.attn_pool = AttentionPool(cfg) if cfg.classifier == "map" else None
        self.pre_logits = PreLogits(D, cfg.representation_size) if cfg.representation_size else None
        self.head = self._new_head(cfg.num_classes)
        self.grad_checkpointing = False
        self.init_weights()

    # -- position embeddings ------------------------------------------------------------------------

    def _init_pos_embed(self, grid: Size) -> None:
        """Create the parameters (or buffer) of the configured position embedding for a patch grid."""
        D, kind = self.cfg.embed_dim, self.cfg.pos_embed
        self.grid = grid
        self.pos_embed = self.pos_embed_row = self.pos_embed_col = None
        if kind == "learn":
            self.pos_embed = nn.Parameter(torch.empty(1, self.num_pos_prefix + grid[0] * grid[1], D))
        elif kind == "learn2d":  # the paper's 2-D ablation: D/2 for the row, D/2 for the column
            self.pos_embed_row = nn.Parameter(torch.empty(1, grid[0], D // 2))
            self.pos_embed_col = nn.Parameter(torch.empty(1, grid[1], D - D // 2))

    def _prefix(self, x: Tensor) -> Tensor:
        """Prepend the class token and the register tokens to the patch tokens ``x``."""
        tokens = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        return torch.cat([*tokens, x], dim=1) if tokens else x

    def _pos_embed(self, x: Tensor, grid: Size) -> Tensor:
        """Prepend the prefix tokens and add position embeddings (the class token's included, as in the
        paper, unless ``no_embed_class``)."""
        kind = self.cfg.pos_embed
        # An ONNX export trace of a dynamic-size model keeps the resampling in the graph (exact at the trained size).
        resample = grid != self.grid or (torch.jit.is_tracing() and not self.patch_embed.strict_img_size)
        if kind == "learn":
            pos = self.pos_embed
            if resample:
                pos = resample_pos_embed(pos, grid, self.grid, self.num_pos_prefix, method=self.cfg.pos_resample)
            if self.num_pos_prefix:
                return self.pos_drop(self._prefix(x) + pos)
            return self.pos_drop(self._prefix(x + pos))
        # Other kinds embed patches only; the class token is itself a learned vector.
        if kind == "learn2d":
            rows, cols = self.pos_embed_row, self.pos_embed_col
            if resample:
                rows = resample_axis(rows, grid[0], method=self.cfg.pos_resample)
                cols = resample_axis(cols, grid[1], method=self.cfg.pos_resample)
            h, w = grid
            pos = torch.cat([rows[:, :, None].expand(-1, h, w, -1), cols[:, None].expand(-1, h, w, -1)], dim=-1)
            x = x + pos.reshape(1, h * w, -1)
        elif kind == "sincos":
            x = x + sincos_2d(grid, self.cfg.embed_dim).to(x)
        return self.pos_drop(self._prefix(x))

    # -- initialisation (official: xavier-uniform dense kernels, tiny-normal MLP biases, zero head) ------

    def init_weights(self) -> None:
        for blk in self.blocks:
            for w in blk.attn.qkv.weight.chunk(3, dim=0):  # xavier over each of q, k, v (D x D), as if separate
                nn.init.xavier_uniform_(w)
            nn.init.zeros_(blk.attn.qkv.bias)
            for lin in (blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)
            nn.init.normal_(blk.mlp.fc1.bias, std=1e-6)
            nn.init.normal_(blk.mlp.fc2.bias, std=1e-6)
        for p in (self.pos_embed, self.pos_embed_row, self.pos_embed_col):
            if p is not None:
                nn.init.normal_(p, std=0.02)
        if self.reg_token is not None:  # DINOv2's init; distinct registers, as none has a position embedding
            nn.init.normal_(self.reg_token, std=1e-6)
        if self.attn_pool is not None:
            pool = self.attn_pool
            nn.init.normal_(pool.latent, std=self.cfg.embed_dim**-0.5)
            for lin in (pool.q, pool.kv, pool.proj, pool.mlp.fc1, pool.mlp.fc2):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)
        if isinstance(self.patch_embed, PatchEmbed):
            lecun_normal_(self.patch_embed.proj.weight)
            if self.patch_embed.proj.bias is not None:
                nn.init.zeros_(self.patch_embed.proj.bias)
        if self.pre_logits is not None:
            lecun_normal_(self.pre_logits.fc.weight)
            nn.init.zeros_(self.pre_logits.fc.bias)

    def _new_head(self, num_classes: int) -> nn.Module:
        if num_classes == 0:
            return nn.Identity()
        head = nn.Linear(self.cfg.representation_size or self.cfg.embed_dim, num_classes)
        nn.init.zeros_(head.weight)
        nn.init.constant_(head.bias, self.cfg.head_bias_init)
        return head

    # -- forward --------------------------------------------------------------------------------------

    def _embed(self, x: Tensor) -> tuple[Tensor, Size]:
        """Image -> the tokens the first block sees, and the patch grid."""
        x, grid = self.patch_embed(x)
        x = self.patch_drop(self._pos_embed(x, grid))
        return (self.norm_pre(x) if self.norm_pre is not None else x), grid

    def forward_features(self, x: Tensor) -> Tensor:
        """Image batch -> final normed tokens (B, prefix + h*w, D)."""
        return self._encode(x)

    def _encode(self, x: Tensor, last_queries: int | None = None) -> Tensor:
        """forward_features, where the last block outputs only the first ``last_queries`` tokens if given."""
        x = self._embed(x)[0]
        for i, blk in enumerate(self.blocks):
            queries = last_queries if i == len(self.blocks) - 1 else None
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(blk, x, False, queries, use_reentrant=False)[0]
            else:
                x = blk(x, num_queries=queries)[0]
        return self.norm(x)

    def pool(self, x: Tensor) -> Tensor:
        """Final tokens -> one vector an image: the class token, the patch mean, or the attention pool."""
        if self.cfg.classifier == "token":
            return x[:, 0]
        patches = x[:, self.num_prefix_tokens :]
        return self.attn_pool(patches)[0] if self.attn_pool is not None else patches.mean(dim=1)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Tokens -> logits; with ``pre_logits=True`` the representation the head sees (few-shot eval)."""
        x = self.pool(x)
        if self.pre_logits is not None:
            x = self.pre_logits(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        # With the class-token classifier the logits depend on the other tokens only through the keys and
        # values of the last block, so that block computes the class token's output alone: same logits,
        # ~1/depth less work. forward_features still returns every token.
        last_queries = 1 if self.cfg.classifier == "token" else None
        return self.forward_head(self._encode(x, last_queries))

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | list[int] | None = None,
        return_attention: bool = False,
        norm: bool = False,
    ) -> Intermediates:
        """Per-block tokens (and attention probabilities on request) for analysis and dense tasks.

        ``indices``: block indices to keep (negative counts from the end), or an int n for the last n;
        None keeps all. ``norm`` applies the final LayerNorm to each kept output. With ``return_attention``
        a "map" classifier also gives its pooling query's attention over the patch tokens.
        """
        depth = len(self.blocks)
        if indices is None:
            keep = list(range(depth))
        elif isinstance(indices, int):
            keep = list(range(depth - indices, depth))
        else:
            keep = [i % depth if -depth <= i < depth else _bad_index(i, depth) for i in indices]
        x, grid = self._embed(x)
        tokens, attns = [], []
        for i, blk in enumerate(self.blocks):
            x, attn = blk(x, return_attention=return_attention and i in keep)
            if i in keep:
                tokens.append(self.norm(x) if norm else x)
                if return_attention:
                    attns.append(attn)
        x = self.norm(x)
        pool_attn = None
        if return_attention and self.attn_pool is not None:
            pool_attn = self.attn_pool(x[:, self.num_prefix_tokens :], return_attention=True)[1]
        return Intermediates(x, tokens, attns if return_attention else None, grid, pool_attn)

    # -- changing the model after construction ----------------------------------------------------------

    def reset_classifier(self, num_classes: int, drop_pre_logits: bool = False) -> None:
        """New zero-initialised head; the paper's fine-tuning also drops the pre-logits layer."""
        if drop_pre_logits and self.pre_logits is not None:
            self.pre_logits = None
            self.cfg.representation_size = None
        self.cfg.num_classes = num_classes
        if self.cfg.class_names is not None and len(self.cfg.class_names) != num_classes:
            self.cfg.class_names = None
        ref = self.norm.weight
        self.head = self._new_head(num_classes).to(device=ref.device, dtype=ref.dtype)

    @torch.no_grad()
    def set_input_size(self, img_size: int | Size, method: str | None = None) -> None:
        """Change the input resolution, resampling learned position embeddings to the new patch grid."""
        img_size = to_2tuple(img_size)
        new_grid = self.patch_embed.grid_size(img_size)
        method = method or self.cfg.pos_resample
        if self.pos_embed is not None and new_grid != self.grid:
            new = resample_pos_embed(self.pos_embed, new_grid, self.grid, self.num_pos_prefix, method=method)
            self.pos_embed = nn.Parameter(new)
        if self.pos_embed_row is not None and new_grid != self.grid:
            self.pos_embed_row = nn.Parameter(resample_axis(self.pos_embed_row, new_grid[0], method=method))
            self.pos_embed_col = nn.Parameter(resample_axis(self.pos_embed_col, new_grid[1], method=method))
        self.grid = new_grid
        self.cfg.img_size = img_size
        self.patch_embed.img_size = img_size

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass: less memory for ~30% more compute."""
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """Parameters conventionally excluded from weight decay (timm's convention)."""
        return {"cls_token", "reg_token", "pos_embed", "pos_embed_row", "pos_embed_col", "attn_pool.latent"}

    @property
    def num_features(self) -> int:
        return self.cfg.representation_size or self.cfg.embed_dim

    def save_pretrained(self, path: str) -> None:
        """Write ``path/config.json`` + ``path/model.safetensors`` (see vitlab.from_pretrained)."""
        save_pretrained(self, path)


def build_patch_embed(cfg: ViTConfig) -> nn.Module:
    """Pixels -> tokens: linear patches, or patches of a ResNet feature map for the hybrids."""
    if cfg.backbone_layers is None:
        return PatchEmbed(cfg)
    return HybridEmbed(cfg.backbone_layers, cfg.backbone_width, cfg.in_chans, cfg.patch_size, cfg.embed_dim,
                       cfg.img_size, cfg.dynamic_img_size)


def _bad_index(i: int, depth: int) -> int:
    raise IndexError(f"block index {i} out of range for a model with {depth} blocks")
