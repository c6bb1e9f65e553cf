"""Export a vitlab ViT to ONNX, with what a deployment needs to feed it in the file's metadata.

The graph maps normalised float images (B, C, H, W) to logits, with a dynamic batch, and dynamic
height and width when the model was built with ``dynamic_img_size`` (the position-embedding
resampling is then part of the graph). ``metadata_props`` carry the full ViTConfig
(``vitlab.config``) and, readable by any tool, ``classes``, ``mean``, ``std``, ``img_size``,
``preprocess`` (how a test image becomes ``img_size``: ``resize`` whole | shorter, ``crop_pct``,
``interpolation``; see vitlab.data.Preprocess) and ``model_name``. The exporter is torch's
TorchScript-based one (``dynamo=False``): it needs only the ``onnx`` package for the metadata, and it
traces this model's size arithmetic into the graph.
Every export is checked against torch with ONNX Runtime when that is installed.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import MissingDependencyError, require
from ..models.vit import ViTConfig, VisionTransformer
from ..weights.runs import CONFIG_FILE

OPSET = 17
INPUT, OUTPUT = "pixel_values", "logits"
MAX_ABS_DIFF = 1e-4  # fp32 ONNX Runtime vs torch; measured ~4e-6 on ViT-B/16


@dataclass
class ExportReport:
    path: Path
    dynamic_img_size: bool
    checks: list[tuple[tuple[int, ...], float]] = field(default_factory=list)  # (input shape, max |diff|)
    skipped: str | None = None  # why there was no check

    def __str__(self) -> str:
        dyn = "dynamic batch" + (", height and width" if self.dynamic_img_size else "")
        lines = [f"wrote {self.path} (ONNX opset {OPSET}, {dyn})"]
        if self.skipped:
            lines.append(f"check vs torch skipped: {self.skipped}")
        for shape, diff in self.checks:
            verdict = "ok" if diff <= MAX_ABS_DIFF else "TOO LARGE"
            lines.append(f"check vs torch (ONNX Runtime, fp32) at {'x'.join(map(str, shape))}: "
                         f"max |diff| {diff:.2e} (<= {MAX_ABS_DIFF:g}: {verdict})")
        return "\n".join(lines)


def load_vit(model: VisionTransformer | str | os.PathLike,
             checkpoint: str | os.PathLike | None = None) -> tuple[VisionTransformer, str]:
    """A model as given or loaded from any checkpoint vitlab reads (``checkpoint`` as for vitlab.load_model),
    and a name for it."""
    if isinstance(model, VisionTransformer):
        return model.eval(), "VisionTransformer"
    from ..weights import load_model

    path = Path(model)
    loaded = load_model(path, checkpoint)
    if not isinstance(loaded, VisionTransformer):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a ViT; only ViTs are exported")
    run_config = path / CONFIG_FILE  # a training run: its recipe names the model
    name = path.name
    if run_config.is_file():
        import yaml

        name = ((yaml.safe_load(run_config.read_text()) or {}).get("model") or {}).get("name") or name
    return loaded.eval(), name


def metadata(model: VisionTransformer, name: str) -> dict[str, str]:
    cfg = model.cfg
    classes = list(cfg.class_names) if cfg.class_names else [f"class_{i}" for i in range(cfg.num_classes)]
    return {
        "model_name": name,
        "classes": json.dumps(classes),
        "mean": json.dumps(list(cfg.mean)),
        "std": json.dumps(list(cfg.std)),
        "img_size": json.dumps(list(cfg.img_size)),
        "dynamic_img_size": json.dumps(cfg.dynamic_img_size),
        "preprocess": json.dumps({"resize": cfg.eval_resize, "crop_pct": cfg.eval_crop_pct,
                                  "interpolation": cfg.eval_interpolation}),
        "vitlab.config": json.dumps(cfg.to_dict()),
    }


def read_config(onnx_path: str | os.PathLike) -> tuple[ViTConfig, dict[str, str]]:
    """The ViTConfig and all metadata stored by export_onnx in an ONNX file."""
    onnx = require("onnx", "onnx")
    proto = onnx.load(str(onnx_path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    if "vitlab.config" not in meta:
        raise ValueError(f"{onnx_path} has no vitlab metadata; export it with `vitlab export`")
    return ViTConfig.from_dict(json.loads(meta["vitlab.config"])), meta


def export_onnx(model: VisionTransformer | str | os.PathLike, out: str | os.PathLike, check: bool = True,
                opset: int = OPSET, checkpoint: str | os.PathLike | None = None) -> ExportReport:
    """Write ``model`` (or the checkpoint at that path; ``checkpoint`` as for vitlab.load_model) as ONNX
    to ``out`` and compare it with torch."""
    onnx = require("onnx", "onnx")
    vit, name = load_vit(model, checkpoint)
    cfg = vit.cfg
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    axes = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}
    if cfg.dynamic_img_size:
        axes[INPUT].update({2: "height", 3: "width"})
    example = torch.randn(2, cfg.in_chans, *cfg.img_size)
    with warnings.catch_warnings():  # the tracer's notes on Python-level shape checks, true for every traced size
        warnings.simplefilter("ignore")
        torch.onnx.export(vit, (example,), str(out), dynamo=False, input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes=axes, opset_version=opset)
    proto = onnx.load(str(out))
    for k, v in metadata(vit, name).items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(out))
    report = ExportReport(out, cfg.dynamic_img_size)
    if check:
        _check(vit, report)
    return report


def _check(vit: VisionTransformer, report: ExportReport) -> None:
    """Max |logits difference| against torch at batch 3, and at a non-square size when sizes are dynamic."""
    try:
        ort = require("onnxruntime", "onnx")
    except MissingDependencyError as e:
        report.skipped = str(e)
        return
    cfg, p = vit.cfg, vit.cfg.patch_size
    shapes = [(3, cfg.in_chans, *cfg.img_size)]
    if cfg.dynamic_img_size:
        shapes.append((2, cfg.in_chans, cfg.img_size[0] + p, cfg.img_size[1] + 2 * p))
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    for shape in shapes:
        x = torch.randn(*shape, generator=gen)
        with torch.no_grad():
            ref = vit(x).numpy()
        out = session.run(None, {INPUT: x.numpy()})[0]
        report.checks.append((shape, float(np.abs(out - ref).max())))
    worst = max(d for _, d in report.checks)
    if worst > MAX_ABS_DIFF:
        raise ValueError(f"{report}\nthe exported model differs from torch by {worst:.2e} > {MAX_ABS_DIFF:g}")
