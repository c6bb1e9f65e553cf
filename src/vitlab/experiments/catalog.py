"""The paper's findings as experiments: each a claim, arms built from the normal recipes, checks, a plot.

Step counts are written for the ``quick`` budget (Fashion-MNIST, the 6 x 128 patch-7 ViT, batch 128);
``full`` runs 4x the steps, ``smoke`` 2 steps of one-block models on digits (tests). The transfer pair,
used by ``transfer``, ``masked-patch`` and ``optimizer``: upstream = Fashion-MNIST classes 0-4 (T-shirt,
trouser, pullover, dress, coat: 30k images), downstream = classes 5-9 (sandal, shirt, sneaker, bag, ankle
boot) with few labels per class. Garments -> digits was rejected: probed on MNIST, the main job's
frozen features stay below a raw-pixel probe at every shot count (17-45% vs 35-77%), so "pretraining helps"
could not show there at this scale. The chosen pair shares the imaging (28x28 grey, centred, same scale)
and shifts the labels to classes never seen upstream, which is what transfer to a new task means.
"""
from __future__ import annotations

from typing import Any, Callable

from ..weights.runs import MODEL_DIR
from .core import Analysis, Arm, Context, Experiment, Results
from .recipes import classify, finetune, masked_patch, scratch, steps
from .verdict import greater, similar

UPSTREAM, DOWNSTREAM = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
LABELS_PER_CLASS = {"smoke": 25, "quick": 50, "full": 100}  # downstream labelled training images per class
SHOTS = [1, 5, 10, 25]
DRAWS = [0, 1, 2]  # random draws of the shots, per probe
PRETRAIN_STEPS = 3000  # upstream pretraining at quick: 3000 x 128 = 14 epochs of the 27k upstream training images
FINETUNE_STEPS = 300  # downstream runs at quick: 300 x 50 images
# Every downstream arm is run at each lr of its grid and keeps the one its dev split prefers (`_best_lr`):
FINETUNE_LRS = [0.001, 0.003, 0.01, 0.03]  # SGD, the paper's fine-tuning grid (appendix B.1.1)
SCRATCH_LRS = [5e-4, 1e-3, 2e-3, 4e-3]  # AdamW around the main job's 2e-3: as many candidates as fine-tuning


def _transfer_data(ctx: Context) -> tuple[str, str]:
    up = ctx.class_split("upstream", UPSTREAM)
    down = ctx.class_split("downstream", DOWNSTREAM, LABELS_PER_CLASS[ctx.budget])
    return up, down


def _probe(model_dir: str | None, data: str) -> dict[str, Any]:
    return {"model": model_dir, "data": data, "shots": SHOTS, "draws": DRAWS}


def _lr_arm(name: str, lr: float) -> str:
    return f"{name}-lr{lr:g}"


def _sweep(name: str, seed: int, lrs: list[float], recipe: Callable[[float], dict[str, Any]]) -> list[Arm]:
    """One arm per learning rate, ``name-lr<lr>``; the analysis keeps the one chosen by ``_best_lr``."""
    return [Arm(_lr_arm(name, lr), seed, recipe(lr), tags={"sweep": name, "lr": lr}) for lr in lrs]


def _best_lr(res: Results, name: str, lrs: list[float], metric: str = "dev_top1") -> float:
    """The lr whose runs scored best on their dev splits (summed over seeds; ties, frequent on a 25-image
    dev split, go to the lower final dev loss). The test set plays no part in the choice."""
    def score(lr: float) -> tuple[float, float]:
        a = _lr_arm(name, lr)
        tiebreak = -sum(res.values(a, "dev_loss")) if metric == "dev_top1" else 0.0
        return sum(res.values(a, metric)), tiebreak

    return max(lrs, key=score)


def _sweep_rows(res: Results, name: str, lrs: list[float], chosen: float, what: str) -> list[dict[str, Any]]:
    """The whole sweep for the summary: every lr's dev and test accuracy, the chosen one marked."""
    return [{"arm": _lr_arm(name, lr), "what": what if lr == chosen else "", "lr": f"{lr:g}",
             "chosen (dev)": "yes" if lr == chosen else "", "dev top-1 (%)": res.cell(_lr_arm(name, lr), "dev_top1"),
             "dev loss": res.cell(_lr_arm(name, lr), "dev_loss"), "test top-1 (%)": res.cell(_lr_arm(name, lr), "top1")}
            for lr in lrs]


def _bars(ax, res: Results, arms: list[str], metric: str, labels: list[str], ylabel: str) -> None:
    est = [res.est(a, metric) for a in arms]
    ax.bar(range(len(arms)), [e.mean for e in est], yerr=[2 * e.se for e in est], capsize=4, color="#4c72b0")
    ax.set_xticks(range(len(arms)), labels, rotation=20, ha="right", fontsize=8)
    lo = min(e.mean - 2 * e.se for e in est)
    ax.set_ylim(max(0.0, lo - 5), min(100.0, max(e.mean + 2 * e.se for e in est) + 3))
    ax.set_ylabel(ylabel)
    for i, e in enumerate(est):
        ax.text(i, e.mean + 2 * e.se, f"{e.mean:.1f}", ha="center", va="bottom", fontsize=8)


def _curves(ax, series: list[tuple[str, list[float], list[Any]]], xlabel: str, ylabel: str, title: str,
            xticks: list[int] | None = None) -> None:
    """Accuracy curves on a log x axis, whiskers +-2 standard errors: one (label, xs, estimates) per line."""
    for label, xs, est in series:
        ax.errorbar(xs, [e.mean for e in est], yerr=[2 * e.se for e in est], marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    if xticks is not None:
        ax.set_xticks(xticks, [str(k) for k in xticks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()


# ------------------------------------------------------------------------------------- data-scaling
SIZES = {"smoke": [200, 800], "quick": [1000, 3000, 10000, 30000, 60000], "full": [1000, 3000, 10000, 30000, 60000]}
MODELS = {"vit": "ViT", "resnet": "BiT ResNet", "hybrid": "R+ViT hybrid"}
SCALING_STEPS = 400  # every run, whatever its data size: 400 x 128 images at quick


def _scaling_arms(ctx: Context) -> list[Arm]:
    s, n = ctx.scale, steps(ctx.scale, SCALING_STEPS)
    return [Arm(f"{key}-n{size}", seed, classify(s.dataset, getattr(s, key), s, n, seed, train_limit=size,
                                                 dev_fraction=0.05, device=ctx.device),
                tags={"model": label, "size": size})
            for seed in ctx.seeds for size in SIZES[ctx.budget] for key, label in MODELS.items()]


def _scaling_analysis(res: Results) -> Analysis:
    sizes = sorted({res.tags(a)["size"] for a in res.arms()})
    rows = [{"training images": n, **{label: res.cell(f"{key}-n{n}", "top1") for key, label in MODELS.items()}}
            for n in sizes]
    lo, hi = sizes[0], sizes[-1]
    e = {(k, n): res.est(f"{k}-n{n}", "top1") for k in MODELS for n in (lo, hi)}
    checks = [
        greater(f"BiT ResNet > ViT at {lo} images", "resnet", e["resnet", lo], "vit", e["vit", lo]),
        greater(f"the ResNet's lead over the ViT shrinks from {lo} to {hi} images",
                f"gap@{lo}", e["resnet", lo] - e["vit", lo], f"gap@{hi}", e["resnet", hi] - e["vit", hi]),
    ]

    def plot(fig) -> None:
        series = [(label, sizes, [res.est(f"{key}-n{n}", "top1") for n in sizes]) for key, label in MODELS.items()]
        _curves(fig.add_subplot(1, 1, 1), series, "training images (log scale; 5% of them held out as dev)",
                "test top-1 (%)", "Accuracy vs training-set size, equal steps per run")

    return Analysis(rows, checks, plot)


DATA_SCALING = Experiment(
    name="data-scaling",
    section="Fig. 3-4",
    claim="with little data a CNN (BiT ResNet) beats ViT; the gap narrows or reverses as the data grows",
    paper="Fig. 3-4, section 4.2: on ImageNet-1k BiT ResNets beat ViT-B/L, on ImageNet-21k they are comparable, "
          "on JFT-300M ViT wins; 5-shot on JFT subsets: ResNet better at 9M, ViT-B/32 ahead from ~90M",
    protocol="ViT (6 x 128, patch 7), a BiT ResNet (one unit per stage, width x0.5, 2.0M params) and an R+ViT "
             "hybrid (ResNet root + two 1-unit stages, 1x1 patches, the same ViT) trained from scratch with the "
             "main job's recipe on nested subsets of Fashion-MNIST train (the first N images of its fixed random "
             "order: 1k, 3k, 10k, 30k, 60k; 5% held out as dev). Compute rule: every run takes the same number of "
             "optimizer steps (400 x 128 images at quick, 1600 at full), so small sets are seen for many epochs, as "
             "in the paper's fixed-schedule subsets. Test: the 10k official test set, once, at the end.",
    metric="test top-1 (%) of the final model",
    seeds=1,
    build=_scaling_arms,
    analyze=_scaling_analysis,
)


# ------------------------------------------------------------------------------------------ transfer
def _transfer_arms(ctx: Context) -> list[Arm]:
    s, up, down = ctx.scale, *_transfer_data(ctx)
    n_up, n_down = steps(s, PRETRAIN_STEPS), steps(s, FINETUNE_STEPS)
    arms = []
    for seed in ctx.seeds:
        w = str(ctx.run_dir("pretrain", seed) / MODEL_DIR)
        arms += [Arm("pretrain", seed, classify(up, s.vit, s, n_up, seed, device=ctx.device)),
                 *_sweep("scratch", seed, SCRATCH_LRS,
                         lambda lr: scratch(down, s.vit, s, n_down, seed, lr=lr, device=ctx.device)),
                 *_sweep("finetune-28", seed, FINETUNE_LRS,
                         lambda lr: finetune(down, s.vit, w, s, n_down, seed, lr=lr, device=ctx.device))]
        for method in ("official", "bicubic"):
            arms += _sweep(f"finetune-42-{method}", seed, FINETUNE_LRS,
                           lambda lr, m=method: finetune(down, s.vit, w, s, n_down, seed, img_size=42,
                                                         pos_resample=m, lr=lr, device=ctx.device))
        arms.append(Arm("probe-pretrained", seed, probe=_probe(w, down)))
    return arms + [Arm("probe-pixels", 0, probe=_probe(None, down))]  # no training: one seed is all there is


_TRANSFER_ROWS = {
    "scratch": "from scratch on the downstream labels (AdamW, main-job recipe)",
    "finetune-28": "pretrained upstream, fine-tuned at 28x28 (4x4 patches)",
    "finetune-42-official": "fine-tuned at 42x42 (6x6 patches), pos-embed resampled `official` (linear)",
    "finetune-42-bicubic": "fine-tuned at 42x42, pos-embed resampled `bicubic`",
}


def _swept_lrs(res: Results, name: str) -> list[float]:
    """The lrs a sweep actually ran, read from its arms' tags (in the order they were planned)."""
    return [t["lr"] for t in map(res.tags, res.arms()) if t.get("sweep") == name]


def _chosen_arms(res: Results, names: dict[str, str]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Per downstream arm, the run its dev split chose, and the rows of every sweep."""
    chosen, rows = {}, []
    for name, what in names.items():
        lrs = _swept_lrs(res, name)
        lr = _best_lr(res, name, lrs)
        chosen[name] = _lr_arm(name, lr)
        rows += _sweep_rows(res, name, lrs, lr, what)
    return chosen, rows


def _transfer_analysis(res: Results) -> Analysis:
    arm, rows = _chosen_arms(res, _TRANSFER_ROWS)
    rows.append({"arm": "pretrain", "what": "upstream (classes 0-4) test top-1, for reference",
                 "test top-1 (%)": res.cell("pretrain", "top1")})
    for a, what in (("probe-pretrained", "frozen pretrained features"), ("probe-pixels", "raw pixels (floor)")):
        rows.append({"arm": a, "what": f"few-shot linear probe, {what}: "
                                       + ", ".join(f"{k}-shot {res.cell(a, f'shots{k}')}" for k in SHOTS),
                     "test top-1 (%)": ""})
    t = {a: res.est(arm[a], "top1") for a in _TRANSFER_ROWS}
    checks = [
        greater("pretrained + fine-tuned (28px) > from scratch", arm["finetune-28"], t["finetune-28"],
                arm["scratch"], t["scratch"]),
        greater("fine-tuned at higher resolution (42px, official) > at 28px", arm["finetune-42-official"],
                t["finetune-42-official"], arm["finetune-28"], t["finetune-28"]),
        greater("10-shot probe: pretrained features > raw pixels", "probe-pretrained",
                res.est("probe-pretrained", "shots10"), "probe-pixels", res.est("probe-pixels", "shots10")),
    ]

    def plot(fig) -> None:
        ax = fig.add_subplot(1, 2, 1)
        _bars(ax, res, [arm[a] for a in _TRANSFER_ROWS], "top1",
              ["scratch", "ft 28", "ft 42 official", "ft 42 bicubic"], "downstream test top-1 (%)")
        ax.set_title("Fine-tuning vs scratch")
        series = [(label, SHOTS, [res.est(a, f"shots{k}") for k in SHOTS])
                  for a, label in (("probe-pretrained", "pretrained features"), ("probe-pixels", "raw pixels"))]
        _curves(fig.add_subplot(1, 2, 2), series, "labelled images per class", "probe test top-1 (%)",
                "Few-shot linear probe", xticks=SHOTS)

    return Analysis(rows, checks, plot)


TRANSFER = Experiment(
    name="transfer",
    section="section 3.2",
    claim="pretraining then fine-tuning beats training on the small task alone, and fine-tuning at a higher "
          "resolution (position embeddings interpolated in 2-D) helps further",
    paper="section 3.2 and appendix B.1.1: fine-tune at 384 after pretraining at 224, new zero-initialised head; "
          "Table 5: ViT-B/16 on ImageNet 77.9% from ImageNet-1k pretraining, 84.0% from ImageNet-21k",
    protocol="Upstream: Fashion-MNIST classes 0-4 (30k images; 10% dev), the main job's recipe for 3000 x 128 "
             "images. Downstream: classes 5-9 with 50 labelled images per class at quick (100 at full; 10% dev), "
             "their 5000 test images. Arms: from scratch on the downstream labels; the pretrained encoder with a "
             "new zero-initialised head fine-tuned (SGD momentum 0.9, cosine, clip 1, 300 x 50 images) at "
             "28x28, and at 42x42 with the position embeddings resampled `official` or `bicubic`; the paper's "
             "few-shot ridge probe (1/5/10/25 shots, 3 draws) of the frozen pretrained features beside the same "
             "probe on raw pixels as the floor. Every downstream arm runs at each lr of a grid (fine-tuning: the "
             "paper's 0.001 / 0.003 / 0.01 / 0.03; scratch, AdamW: 5e-4 / 1e-3 / 2e-3 / 4e-3) and keeps the one "
             "with the best final dev top-1 (ties: lower dev loss); the test set plays no part in the choice. Why "
             "this pair: see `vitlab.experiments.catalog`.",
    metric="downstream test top-1 (%); probe accuracy (%) at 10 shots",
    seeds=1,
    build=_transfer_arms,
    analyze=_transfer_analysis,
)


# ----------------------------------------------------------------------------------------- pos-embed
POS_EMBEDS = {"none": "none", "learn": "learned 1-D", "learn2d": "learned 2-D", "sincos": "sin-cos 2-D"}
POS_STEPS = 700  # per run at quick: 700 x 128 = 1.7 epochs of Fashion-MNIST


def _pos_arms(ctx: Context) -> list[Arm]:
    s, n = ctx.scale, steps(ctx.scale, POS_STEPS)
    return [Arm(f"pos-{pe}", seed, classify(s.dataset, {**s.vit, "pos_embed": pe}, s, n, seed, device=ctx.device),
                tags={"pos_embed": pe}) for seed in ctx.seeds for pe in POS_EMBEDS]


def _pos_analysis(res: Results) -> Analysis:
    rows = [{"position embedding": label, "test top-1 (%)": res.cell(f"pos-{pe}", "top1"),
             "seeds": len(res.values(f"pos-{pe}", "top1"))} for pe, label in POS_EMBEDS.items()]
    e = {pe: res.est(f"pos-{pe}", "top1") for pe in POS_EMBEDS}
    checks = [greater(f"{POS_EMBEDS[pe]} > none", pe, e[pe], "none", e["none"]) for pe in ("learn", "learn2d", "sincos")]
    checks += [similar(f"{POS_EMBEDS[pe]} ~ learned 1-D", pe, e[pe], "learn", e["learn"]) for pe in ("learn2d", "sincos")]

    def plot(fig) -> None:
        ax = fig.add_subplot(1, 1, 1)
        _bars(ax, res, [f"pos-{pe}" for pe in POS_EMBEDS], "top1", list(POS_EMBEDS.values()), "test top-1 (%)")
        ax.set_title("Position embeddings (bars: mean, whiskers: ±2 standard errors)")

    return Analysis(rows, checks, plot)


POS_EMBED = Experiment(
    name="pos-embed",
    section="Table 8",
    claim="no position embedding is clearly worst; learned 1-D, learned 2-D and sin-cos are within noise",
    paper="Table 8 / appendix D.4 (ViT-B/16, 5-shot linear ImageNet): none 61.4, learned 1-D 64.2, learned 2-D "
          "64.0, relative 64.4 (sin-cos is the later 'better baselines' choice, not in Table 8)",
    protocol="The main job's ViT and recipe on Fashion-MNIST (10% of train held out as dev), 700 x 128 images "
             "per run at quick (2800 at full), pos_embed none / learn / learn2d / sincos, 2 seeds each (seed sets "
             "initialisation, data order and the dev split).",
    metric="test top-1 (%), mean over seeds",
    seeds=2,
    build=_pos_arms,
    analyze=_pos_analysis,
)


# -------------------------------------------------------------------------------------- masked-patch
def _masked_arms(ctx: Context) -> list[Arm]:
    s, up, down = ctx.scale, *_transfer_data(ctx)
    n_up, n_down = steps(s, PRETRAIN_STEPS), steps(s, FINETUNE_STEPS)
    arms = []
    for seed in ctx.seeds:
        mpp, sup = (str(ctx.run_dir(a, seed) / MODEL_DIR) for a in ("pretrain-masked", "pretrain-supervised"))
        arms += [Arm("pretrain-masked", seed, masked_patch(up, s.vit, s, n_up, seed, device=ctx.device)),
                 Arm("pretrain-supervised", seed, classify(up, s.vit, s, n_up, seed, device=ctx.device)),
                 *_sweep("scratch", seed, SCRATCH_LRS,
                         lambda lr: scratch(down, s.vit, s, n_down, seed, lr=lr, device=ctx.device))]
        for name, w in (("finetune-masked", mpp), ("finetune-supervised", sup)):
            arms += _sweep(name, seed, FINETUNE_LRS,
                           lambda lr, w=w: finetune(down, s.vit, w, s, n_down, seed, lr=lr, device=ctx.device))
    return arms


_MASKED_ROWS = {"scratch": "from scratch on the downstream labels",
                "finetune-masked": "masked-patch pretrained on unlabelled upstream images, fine-tuned",
                "finetune-supervised": "supervised pretrained on labelled upstream images, fine-tuned"}


def _masked_analysis(res: Results) -> Analysis:
    arm, rows = _chosen_arms(res, _MASKED_ROWS)
    rows.append({"arm": "pretrain-masked", "what": "pretext: masked-patch colour accuracy on upstream test",
                 "test top-1 (%)": res.cell("pretrain-masked", "masked_acc")})
    e = {a: res.est(arm[a], "top1") for a in _MASKED_ROWS}
    checks = [greater("masked-patch pretraining > scratch", arm["finetune-masked"], e["finetune-masked"],
                      arm["scratch"], e["scratch"]),
              greater("supervised pretraining > masked-patch pretraining", arm["finetune-supervised"],
                      e["finetune-supervised"], arm["finetune-masked"], e["finetune-masked"])]

    def plot(fig) -> None:
        ax = fig.add_subplot(1, 1, 1)
        _bars(ax, res, [arm[a] for a in _MASKED_ROWS], "top1", ["scratch", "masked-patch", "supervised"],
              "downstream test top-1 (%)")
        ax.set_title("Self-supervised vs supervised pretraining, fine-tuned on few labels")

    return Analysis(rows, checks, plot)


MASKED_PATCH = Experiment(
    name="masked-patch",
    section="appendix B.1.2",
    claim="masked-patch self-supervision beats training from scratch but not supervised pretraining",
    paper="appendix B.1.2: ViT-B/16 79.9% on ImageNet after fine-tuning, +2% over from scratch, ~4% below "
          "supervised JFT pretraining",
    protocol="The transfer pair (upstream Fashion-MNIST classes 0-4, downstream classes 5-9 with 50 labels per "
             "class at quick). Masked-patch pretraining on the upstream images without labels "
             "(configs/masked_pretrain.yaml: 50% of patches corrupted, 3-bit mean colour targets, Adam 2e-4) and "
             "supervised pretraining on the same images with labels, 3000 x 128 images each; both fine-tuned as in "
             "`transfer` at 28x28; against scratch on the downstream labels. Each downstream arm keeps the lr its "
             "dev split prefers from the grids of `transfer`.",
    metric="downstream test top-1 (%)",
    seeds=1,
    build=_masked_arms,
    analyze=_masked_analysis,
)


# ----------------------------------------------------------------------------------------- optimizer
OPTIMIZERS = {"adam": ("adamw", 0.05, [1e-3, 3e-3]), "sgd": ("sgd", 1e-4, [0.03, 0.1])}  # name, weight decay, lrs
OPTIM_STEPS = 1200


def _optim_arms(ctx: Context) -> list[Arm]:
    s, (up, down) = ctx.scale, _transfer_data(ctx)
    n = steps(s, OPTIM_STEPS)
    arms = []
    for seed in ctx.seeds:
        for opt, (name, wd, lrs) in OPTIMIZERS.items():
            for lr in lrs:
                a = _lr_arm(opt, lr)
                arms += [Arm(a, seed, classify(up, s.vit, s, n, seed, lr=lr, optim=name, weight_decay=wd,
                                               device=ctx.device), tags={"optimizer": opt, "lr": lr}),
                         Arm(f"probe-{a}", seed, probe=_probe(str(ctx.run_dir(a, seed) / MODEL_DIR), down))]
    return arms


def _optim_analysis(res: Results) -> Analysis:
    chosen = {}
    rows = []
    for opt, (_, _, lrs) in OPTIMIZERS.items():
        chosen[opt] = _best_lr(res, opt, lrs, metric="best_dev_top1")  # tuned on the upstream dev split only
        for lr in lrs:
            a = _lr_arm(opt, lr)
            rows.append({"optimizer": opt, "lr": f"{lr:g}", "chosen (best dev)": "yes" if lr == chosen[opt] else "",
                         "upstream dev top-1 (%)": res.cell(a, "best_dev_top1"),
                         "upstream test top-1 (%)": res.cell(a, "top1"),
                         **{f"{k}-shot downstream (%)": res.cell(f"probe-{a}", f"shots{k}") for k in SHOTS}})
    pa, ps = (f"probe-{_lr_arm(o, chosen[o])}" for o in ("adam", "sgd"))
    checks = [greater("Adam-pretrained features > SGD-pretrained features, 10-shot downstream probe",
                      pa, res.est(pa, "shots10"), ps, res.est(ps, "shots10"))]

    def plot(fig) -> None:
        series = [(f"{opt} (lr {chosen[opt]:g})", SHOTS,
                   [res.est(f"probe-{_lr_arm(opt, chosen[opt])}", f"shots{k}") for k in SHOTS]) for opt in OPTIMIZERS]
        _curves(fig.add_subplot(1, 1, 1), series, "labelled downstream images per class", "probe test top-1 (%)",
                "Few-shot transfer of Adam- vs SGD-pretrained features", xticks=SHOTS)

    return Analysis(rows, checks, plot)


OPTIMIZER = Experiment(
    name="optimizer",
    section="appendix D.1",
    claim="Adam pretraining gives slightly better transfer than SGD with momentum",
    paper="appendix D.1: Adam-pretrained BiT ResNets on JFT beat SGD on most transfer datasets, by a small "
          "margin on average; Adam is the paper's default for pretraining",
    protocol="Upstream pretraining on Fashion-MNIST classes 0-4 (10% dev) at equal budget (1200 x 128 images at "
             "quick), AdamW (wd 0.05; lr 1e-3, 3e-3) vs SGD momentum 0.9 (wd 1e-4; lr 0.03, 0.1); per optimizer the "
             "lr with the best upstream dev accuracy is kept; judged by the few-shot ridge probe of its frozen "
             "features on the downstream classes 5-9 (1/5/10/25 shots, 3 draws).",
    metric="downstream 10-shot probe accuracy (%)",
    seeds=1,
    build=_optim_arms,
    analyze=_optim_analysis,
)


# ------------------------------------------------------------------------------------------- scaling
# Three sizes per family (quick/full). ViT: depth x width, patch 7; hybrid: the same ViTs on the ResNet root
# and two 1-unit stages (1x1 patches); BiT ResNet: units per stage x width.
_VIT_SIZES = [{"depth": 2, "embed_dim": 64, "num_heads": 2, "mlp_dim": 128},
              {"depth": 4, "embed_dim": 96, "num_heads": 3, "mlp_dim": 192},
              {"depth": 6, "embed_dim": 128, "num_heads": 4, "mlp_dim": 256}]
_RESNET_SIZES = [{"layers": [1, 1, 1, 1], "width": 0.5}, {"layers": [1, 1, 1, 1], "width": 1.0},
                 {"layers": [2, 2, 2, 2], "width": 1.0}]
_TINY_VIT_SIZES = [{"depth": 1, "embed_dim": 16, "num_heads": 2, "mlp_dim": 32},
                   {"depth": 1, "embed_dim": 32, "num_heads": 2, "mlp_dim": 64},
                   {"depth": 2, "embed_dim": 32, "num_heads": 2, "mlp_dim": 64}]
_TINY_RESNET_SIZES = [{"layers": [1], "width": 0.5}, {"layers": [1, 1], "width": 0.5}, {"layers": [1, 1], "width": 1.0}]
SIZE_STEPS = 300  # per run at quick: 300 x 128 Fashion-MNIST images


def _size_models(ctx: Context) -> dict[str, list[dict[str, Any]]]:
    s, smoke = ctx.scale, ctx.budget == "smoke"
    vits, resnets = (_TINY_VIT_SIZES, _TINY_RESNET_SIZES) if smoke else (_VIT_SIZES, _RESNET_SIZES)
    stem = {k: s.hybrid[k] for k in ("patch_size", "backbone_layers")}
    return {"vit": [{**s.vit, **v} for v in vits], "resnet": [{**s.resnet, **r} for r in resnets],
            "hybrid": [{**s.vit, **v, **stem} for v in vits]}


def _size_arms(ctx: Context) -> list[Arm]:
    s, n = ctx.scale, steps(ctx.scale, SIZE_STEPS)
    return [Arm(f"{key}-size{i}", seed, classify(s.dataset, model, s, n, seed, device=ctx.device),
                tags={"model": MODELS[key], "size": i})
            for seed in ctx.seeds for key, models in _size_models(ctx).items() for i, model in enumerate(models)]


def train_flops(config: dict[str, Any]) -> float:
    """Training FLOPs of a run: 3 x the forward FLOPs of one image (forward + backward) x images seen,
    counted by torch's FlopCounterMode on the meta device (no memory, no compute)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..models.registry import get_config, model_from_config
    from ..train.config import config_from_dict, model_options

    cfg = config_from_dict(config)
    with torch.device("meta"):
        model = model_from_config(get_config(cfg.model.name, **{**model_options(cfg), "num_classes": 10}))
        x = torch.empty(1, model.cfg.in_chans, *model.cfg.img_size)
        with FlopCounterMode(display=False) as counter:
            model(x)
    return 3.0 * counter.get_total_flops() * cfg.schedule.steps * cfg.data.batch_size


def _size_analysis(res: Results) -> Analysis:
    configs = {r["arm"]: r["config"] for r in res.rows}
    flops = {a: train_flops(c) for a, c in configs.items()}
    rows = [{"model": MODELS[key], "size": i, "train TFLOPs": f"{flops[f'{key}-size{i}'] / 1e12:.3g}",
             "test top-1 (%)": res.cell(f"{key}-size{i}", "top1")} for key in MODELS for i in range(3)]
    e = {(k, i): res.est(f"{k}-size{i}", "top1") for k in ("vit", "hybrid") for i in (0, 2)}
    checks = [greater("hybrid > ViT at the smallest size", "hybrid-size0", e["hybrid", 0], "vit-size0", e["vit", 0]),
              greater("the hybrid's lead over the ViT shrinks from the smallest to the largest size",
                      "gap@size0", e["hybrid", 0] - e["vit", 0], "gap@size2", e["hybrid", 2] - e["vit", 2])]

    def plot(fig) -> None:
        series = [(label, [flops[f"{key}-size{i}"] for i in range(3)], [res.est(f"{key}-size{i}", "top1") for i in range(3)])
                  for key, label in MODELS.items()]
        _curves(fig.add_subplot(1, 1, 1), series, "training FLOPs (3 x forward x images; log scale)", "test top-1 (%)",
                "Accuracy vs training compute, three sizes per family")

    return Analysis(rows, checks, plot)


SCALING = Experiment(
    name="scaling",
    section="Fig. 5",
    claim="at small compute hybrids slightly beat pure ViT, and the difference vanishes for larger models",
    paper="Fig. 5, section 4.4: performance vs pretraining compute for ViT, ResNets and hybrids; hybrids ahead at "
          "small budgets, the gap vanishing for larger models; ViT needs 2-4x less compute than ResNets for the "
          "same transfer accuracy",
    protocol="Three sizes each of ViT (2 x 64, 4 x 96, 6 x 128, patch 7), R+ViT hybrid (the same ViTs on the "
             "ResNet root and two 1-unit stages, 1x1 patches) and BiT ResNet (1 unit per stage x0.5, x1; 2 units "
             "x1), trained from scratch on Fashion-MNIST (10% dev) with the main job's recipe for the same 300 x 128 "
             "images at quick (1200 at full); training FLOPs counted with torch's FlopCounterMode (3 x forward).",
    metric="test top-1 (%) against training FLOPs",
    seeds=1,
    build=_size_arms,
    analyze=_size_analysis,
)

EXPERIMENTS = {e.name: e for e in (DATA_SCALING, TRANSFER, POS_EMBED, MASKED_PATCH, OPTIMIZER, SCALING)}
