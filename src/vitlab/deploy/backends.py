"""Inference backends behind one call: a batch of images in, logits out.

``torch`` runs the vitlab model; ``onnxruntime`` and ``openvino`` run its ONNX export (an ``.onnx``
file from ``vitlab export``, or any checkpoint, exported on the fly). Batches are float32 images
already preprocessed as the model expects, or uint8 images of any size, preprocessed here as the
model's metadata says (its resize, crop, mean and std: the same definition `vitlab eval` uses). Attention maps exist only on the torch backend.
"""
from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from ..models.vit import ViTConfig, VisionTransformer
from ..errors import require
from .onnx import INPUT, export_onnx, load_vit, read_config

BACKENDS = ("torch", "onnxruntime", "openvino")
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


class Backend(Protocol):
    name: str
    cfg: ViTConfig

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(B, C, H, W) float32 normalised or uint8 images -> (B, num_classes) float32 logits."""


def prepare(batch: np.ndarray | Tensor, cfg: ViTConfig) -> np.ndarray:
    """float32 normalised input for the model. uint8 images, of any size, get the model's test-time
    preprocessing (EvalTransform.for_model: its resize and crop, then its mean/std); float32 images are
    taken as already preprocessed and must fit the model's size."""
    x = batch.detach().cpu().numpy() if isinstance(batch, Tensor) else np.asarray(batch)
    if x.ndim != 4 or x.shape[1] != cfg.in_chans:
        raise ValueError(f"expected a (batch, {cfg.in_chans}, H, W) image array, got shape {x.shape}")
    if x.dtype == np.uint8:
        from ..data import EvalTransform

        return EvalTransform.for_model(cfg)(torch.from_numpy(x)).numpy()
    size, p = tuple(x.shape[2:]), cfg.patch_size
    if (size != tuple(cfg.img_size)) if not cfg.dynamic_img_size else (size[0] % p or size[1] % p):
        need = f"multiples of the patch size {p}" if cfg.dynamic_img_size else f"{cfg.img_size}"
        raise ValueError(f"image size {size} does not fit the model: needs {need}")
    return np.ascontiguousarray(x, dtype=np.float32)


class TorchBackend:
    name = "torch"

    def __init__(self, model: VisionTransformer | str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> None:
        self.model = load_vit(model, checkpoint)[0]
        self.cfg = self.model.cfg

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(prepare(batch, self.cfg))).float().numpy()


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU. A batch runs as chunks of at most ``chunk`` images, each on one thread, as
    many at once as there are threads (one session: its runs may overlap). For a model this small that
    beats one run whose every operator is split over the threads: measured with the main-job model on a
    2-core Xeon, 1024 images took 1.5x less time as 32-image chunks on two threads than as one 2-thread
    run, and a single image ran faster on one thread than on two. Results per image do not depend on
    how the batch is cut (up to float rounding in the matmul's blocking, ~1e-7)."""

    name = "onnxruntime"
    CHUNK = 32  # the best of 16-512 measured (activations of a chunk stay in the core's cache)

    def __init__(self, onnx_path: str | os.PathLike, threads: int | None = None, chunk: int = CHUNK) -> None:
        ort = require("onnxruntime", "onnx")
        if chunk < 1 or (threads or 0) < 0:
            raise ValueError(f"chunk={chunk}, threads={threads}: chunk must be >= 1 and threads >= 1 "
                             "(or None for torch's thread count)")
        self.cfg = read_config(onnx_path)[0]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.threads = threads or torch.get_num_threads()  # as many as torch would use
        self.chunk = chunk
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="vitlab-ort") if self.threads > 1 else None

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {INPUT: x})[0]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = prepare(batch, self.cfg)
        # Even chunks, so that every thread has work when the batch is smaller than threads x chunk.
        size = max(1, min(self.chunk, -(-len(x) // self.threads)))
        if len(x) <= size:
            return self._run(x)
        parts = [x[i:i + size] for i in range(0, len(x), size)]
        return np.concatenate(list((self._pool.map if self._pool else map)(self._run, parts)))


class OpenVinoBackend:
    """OpenVINO on the CPU. ``precision="bf16"`` lets it compute in bf16 (its own default on CPUs with
    native bf16: several times faster there, logits within ~1e-2); "fp32" keeps the model's results."""

    name = "openvino"

    def __init__(self, onnx_path: str | os.PathLike, threads: int | None = None, precision: str = "fp32") -> None:
        ov = require("openvino", "openvino")
        if precision not in OPENVINO_PRECISIONS:
            raise ValueError(f"precision={precision!r} is not one of {tuple(OPENVINO_PRECISIONS)}")
        self.cfg = read_config(onnx_path)[0]
        self.precision = precision
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
                  "INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}
        self.compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.compiled(prepare(batch, self.cfg))[0])


def open_backend(source: VisionTransformer | str | os.PathLike, backend: str = "torch", threads: int | None = None,
                 precision: str = "fp32", checkpoint: str | os.PathLike | None = None) -> Backend:
    """A backend for a model, an ``.onnx`` file from ``vitlab export``, or any checkpoint (exported on the
    fly; ``checkpoint`` as for vitlab.load_model). ``precision``: OpenVINO's, fp32 or bf16."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {BACKENDS}")
    if backend == "torch":
        if isinstance(source, (str, os.PathLike)) and Path(source).suffix == ".onnx":
            raise ValueError(f"{source} is an ONNX file: choose --backend onnxruntime or openvino")
        return TorchBackend(source, checkpoint)
    if backend == "onnxruntime":
        require("onnxruntime", "onnx")  # before exporting: the missing package is the message, not a later failure
        cls, kwargs = OnnxRuntimeBackend, {}
    else:
        require("openvino", "openvino")
        cls, kwargs = OpenVinoBackend, {"precision": precision}
    if isinstance(source, (str, os.PathLike)) and Path(source).suffix == ".onnx":
        return cls(source, threads, **kwargs)
    with tempfile.TemporaryDirectory() as tmp:  # both runtimes hold the model in memory once loaded
        path = export_onnx(source, Path(tmp) / "model.onnx", check=False, checkpoint=checkpoint).path
        return cls(path, threads, **kwargs)


class BackendModel(nn.Module):
    """A backend as a module, so code written for a model (evaluate, predict) runs it unchanged."""

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend, self.cfg = backend, backend.cfg

    def forward(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self.backend(x)).to(x.device)
