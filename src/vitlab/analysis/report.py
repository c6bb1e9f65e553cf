"""`vitlab analyze`: the paper's section 4.5 analyses for one checkpoint, as PNGs + JSON + index.md."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..data.pipeline import materialize
from ..data import open_dataset
from ..data.transforms import EvalTransform
from ..models.vit import VisionTransformer
from .attention import attention_pass, attention_rollout, mean_attention_distance
from .embeddings import embedding_filters_pca, position_embedding_similarity
from .norms import HIGH_NORM_FACTOR, high_norm_share, token_norms
from .plots import plot_attention_distance, plot_filters, plot_position_similarity, plot_rollout, plot_token_norms
from .predict import class_names

PathLike = str | os.PathLike


def similarity_by_distance(sim: np.ndarray) -> dict[int, float]:
    """Mean cosine similarity of position pairs grouped by their grid distance (Euclidean, rounded):
    a falling curve is the paper's "closer patches have more similar embeddings"."""
    gh, gw = sim.shape[:2]
    ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    c = np.stack([ys.ravel(), xs.ravel()], 1)
    d = np.rint(np.linalg.norm(c[:, None] - c[None], axis=-1)).astype(int)
    s = sim.reshape(gh * gw, gh * gw)
    return {int(k): float(s[d == k].mean()) for k in np.unique(d)}


def _write_json(path: Path, obj: dict[str, Any]) -> Path:
    path.write_text(json.dumps(obj, indent=1) + "\n")
    return path


def _sample(n_total: int, n: int, seed: int) -> torch.Tensor:
    """A fixed random sample, so reruns analyse the same images."""
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n]


@torch.no_grad()
def analyze(
    model: VisionTransformer,
    data: str,
    out: PathLike,
    num_images: int = 64,
    split: str = "test",
    data_dir: PathLike | None = None,
    num_rollout: int = 8,
    batch_size: int = 16,
    n_components: int = 28,
    seed: int = 0,
) -> dict[str, Any]:
    """Write filters.png, pos_embed_similarity.png, attention_distance.png, rollout.png, token_norms.png
    (each with a .json of its numbers) and index.md into ``out``; returns the summary that index.md shows.

    ``data`` is anything vitlab.data.open_dataset reads (a name, a class-folder tree, an .npz);
    ``num_images`` of its ``split`` (a fixed random sample) give the attention distances, the first
    ``num_rollout`` of them the rollout maps. Analyses that do not apply to the model (filters of a
    hybrid, similarity of pos_embed='none') are explained in index.md instead of drawn.
    """
    if num_images < 1 or num_rollout < 0 or batch_size < 1:
        raise ValueError("num_images and batch_size must be >= 1, num_rollout >= 0")
    model.eval()
    cfg = model.cfg
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = open_dataset(data, split, data_dir, in_memory=False)  # folders: only the sample is read
    if len(source) == 0:
        raise ValueError(f"dataset {data!r} ({split}) has no images")
    sections: list[tuple[str, str | None, str]] = []  # (title, file stem or None, one-line explanation)
    summary: dict[str, Any] = {
        "model": {k: v for k, v in cfg.to_dict().items() if k not in ("class_names", "mean", "std")},
        "data": data, "split": split,
    }

    # (1) patch-embedding filters
    try:
        comps, ratio = embedding_filters_pca(model, n_components)
        plot_filters(comps, out / "filters.png", ratio)
        _write_json(out / "filters.json", {"explained_variance_ratio": ratio.tolist(), "components": comps.tolist()})
        summary["filters_explained_variance"] = float(ratio.sum())
        sections.append(("Embedding filters (Fig. 7 left)", "filters",
                         f"The first {len(comps)} principal components of the patch-embedding filters, as "
                         f"{cfg.patch_size}x{cfg.patch_size} patches; together they explain "
                         f"{100 * ratio.sum():.1f}% of the filters' variance. The paper finds smooth, low-frequency "
                         "basis functions, like those of a learned image basis."))
    except ValueError as e:
        sections.append(("Embedding filters", None, f"Not drawn: {e}."))

    # (2) position-embedding similarity
    try:
        sim = position_embedding_similarity(model)
        by_d = similarity_by_distance(sim)
        plot_position_similarity(sim, out / "pos_embed_similarity.png")
        _write_json(out / "pos_embed_similarity.json", {"grid": list(sim.shape[:2]), "pos_embed": cfg.pos_embed,
                                                         "mean_by_distance": by_d, "similarity": sim.tolist()})
        summary["pos_similarity_by_distance"] = by_d
        near, far = by_d.get(1, float("nan")), by_d[max(by_d)]
        sections.append(("Position-embedding similarity (Fig. 7 centre)", "pos_embed_similarity",
                         f"Tile (i, j): cosine similarity of position (i, j)'s embedding to every other "
                         f"({cfg.pos_embed}; class entry excluded). Mean similarity of neighbours {near:.2f}, at the "
                         f"largest distance {max(by_d)} {far:.2f}; the paper finds nearby patches similar and "
                         "row/column structure."))
    except ValueError as e:
        sections.append(("Position-embedding similarity", None, f"Not drawn: {e}."))

    # (3) + (4): one explicit-attention pass over a fixed sample
    transform = EvalTransform.for_model(cfg)
    sample = _sample(len(source), min(num_images, len(source)), seed)
    ds = materialize(source, transform, sample)  # just the sample, preprocessed (unreadable files left out)
    idx = torch.arange(len(ds))
    dev = next(model.parameters()).device
    names = class_names(model)
    dist_sum, correct, seen = None, 0, 0
    roll_maps, roll_titles = [], []
    patch_norms, prefix_norms = [], []
    gh = gw = 0
    bar = tqdm(total=len(idx), desc="analyze", unit="img")
    for start in range(0, len(idx), batch_size):
        rows = idx[start : start + batch_size]
        x = transform.normalize(ds.images[rows]).to(dev)
        logits, attns, (gh, gw), readout, tokens = attention_pass(model, x)
        norms = token_norms(tokens, model.num_prefix_tokens, (gh, gw))
        patch_norms.append(norms[0])
        prefix_norms.append(norms[1])
        cell = (cfg.img_size[0] / gh, cfg.img_size[1] / gw)  # pixels per token, hybrids included
        d = mean_attention_distance(attns, (gh, gw), cell, model.num_prefix_tokens) * len(rows)
        dist_sum = d if dist_sum is None else dist_sum + d
        seen += len(rows)
        pred = logits.argmax(-1).cpu() if cfg.num_classes else None
        if pred is not None and len(ds.classes) == cfg.num_classes:
            correct += int((pred == ds.labels[rows]).sum())
        take = max(0, min(num_rollout - len(roll_maps), len(rows)))
        if take:
            part = readout if isinstance(readout, str) else readout[:take]
            roll_maps.extend(attention_rollout([a[:take] for a in attns], model.num_prefix_tokens, (gh, gw), readout=part))
            for j in range(take):
                t = f"label: {ds.classes[int(ds.labels[rows[j]])]}"
                roll_titles.append(t + (f" / pred: {names[int(pred[j])]}" if pred is not None else ""))
        bar.update(len(rows))
    bar.close()
    distance = dist_sum / seen
    plot_attention_distance(distance, out / "attention_distance.png", cfg.img_size)
    per_layer = distance.mean(1)
    _write_json(out / "attention_distance.json", {"num_images": seen, "pixels_per_token": list(cell),
                                                   "distance": distance.tolist(), "mean_per_layer": per_layer.tolist()})
    summary["attention_distance_per_layer"] = per_layer.tolist()
    if len(ds.classes) == cfg.num_classes and cfg.num_classes:
        summary["sample_accuracy"] = correct / seen
    sections.append(("Mean attention distance (Fig. 7 right)", "attention_distance",
                     f"Per head and layer, the attention-weighted pixel distance between query and key patches, "
                     f"averaged over {seen} {split} images. Layer means go from {per_layer[0]:.1f} px (layer 1) to "
                     f"{per_layer[-1]:.1f} px (layer {len(per_layer)}), min head in layer 1 "
                     f"{distance[0].min():.1f} px; the paper finds some heads local and others global in early "
                     "layers, and distances growing with depth."))
    if roll_maps:
        images = [ds.images[int(i)].permute(1, 2, 0).numpy() for i in idx[: len(roll_maps)]]
        plot_rollout(images, roll_maps, out / "rollout.png", titles=roll_titles)
        _write_json(out / "rollout.json", {"indices": sample[: len(roll_maps)].tolist(), "titles": roll_titles,
                                           "grid": [gh, gw], "maps": np.stack(roll_maps).tolist()})
        pooled = {"token": "the class token's row", "gap": "the mean of the patch rows (gap model: no class token)",
                  "map": "the patch rows weighted by the attention-pool head's query (map model: no class token)"
                  }[cfg.classifier] + (f"; the {cfg.reg_tokens} register tokens left out" if cfg.reg_tokens else "")
        sections.append(("Attention rollout (Fig. 6)", "rollout",
                         f"Attention rollout (heads averaged, identity added for the residual, multiplied over "
                         f"layers), {pooled}, drawn over {len(roll_maps)} images; each map scaled to its maximum."))
    sections.append(_norm_section(model, np.concatenate(patch_norms), np.concatenate(prefix_norms), num_rollout,
                                  out, summary))
    _write_index(out, sections, summary)
    return summary


def _norm_section(model: VisionTransformer, patch_norms: np.ndarray, prefix_norms: np.ndarray, num_maps: int,
                  out: Path, summary: dict[str, Any]) -> tuple[str, str, str]:
    """token_norms.png/.json and the index entry: the registers paper's norm histogram, maps and outlier share."""
    threshold, share = high_norm_share(patch_norms)
    names = (["class token"] if model.cfg.classifier == "token" else []) + [f"register {i}" for i in range(model.cfg.reg_tokens)]
    plot_token_norms(patch_norms[:num_maps], patch_norms, threshold, out / "token_norms.png", prefix_norms, names)
    median = float(np.median(patch_norms))
    prefix = {n: float(np.median(prefix_norms[:, j])) for j, n in enumerate(names)}
    _write_json(out / "token_norms.json", {"factor": HIGH_NORM_FACTOR, "threshold": threshold, "high_norm_share": share,
                                            "median_patch_norm": median, "median_prefix_norms": prefix,
                                            "maps": patch_norms[:num_maps].tolist()})
    summary["high_norm_share"] = share
    regs = (f" The registers' median norms: {', '.join(f'{v:.3g}' for k, v in prefix.items() if k.startswith('register'))}."
            if model.cfg.reg_tokens else "")
    return ("Token norms (Darcet et al. 2023, Fig. 3-4)", "token_norms",
            f"Norms of the last block's output tokens (before the final norm). Median patch norm {median:.3g}; "
            f"{100 * share:.2f}% of the patch tokens are above {HIGH_NORM_FACTOR:g}x that ({threshold:.3g}), the "
            "high-norm outliers the registers paper finds in large, long-trained ViTs (about 2% in DINOv2 ViT-L) "
            f"and removes with register tokens.{regs}")


def _write_index(out: Path, sections: list[tuple[str, str | None, str]], summary: dict[str, Any]) -> None:
    m = summary["model"]
    lines = [
        "# vitlab analyze", "",
        f"Model: depth {m['depth']}, dim {m['embed_dim']}, heads {m['num_heads']}, patch {m['patch_size']}, "
        f"image {m['img_size'][0]}x{m['img_size'][1]}, classifier {m['classifier']}, pos_embed {m['pos_embed']}"
        + (", hybrid" if m.get("backbone_layers") else "") + f". Data: {summary['data']} ({summary['split']})"
        + (f", sample accuracy {100 * summary['sample_accuracy']:.1f}%." if "sample_accuracy" in summary else "."), "",
    ]
    for title, stem, text in sections:
        lines += [f"## {title}", "", text, ""]
        if stem:
            lines += [f"![{title}]({stem}.png)", "", f"Numbers: [{stem}.json]({stem}.json)", ""]
    (out / "index.md").write_text("\n".join(lines))
