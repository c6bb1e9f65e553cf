"""What a training step changes and a checkpoint holds: the model (and the objective's wrapper around it),
optimizer, EMA, the augmentation stream, step counters; plus the switch to another image size at a stage.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import EvalTransform, TrainTransform
from .config import Config
from .checkpoint import save_checkpoint
from .distributed import Dist, barrier
from .objectives import Objective
from .optim import ModelEMA, build_optimizer
from .plan import Plan
from .precision import Precision, agreed, choose_precision


class TrainState:
    def __init__(self, cfg: Config, model: nn.Module, objective: Objective, plan: Plan, d: Dist, run_dir: Path,
                 cropped: bool = False) -> None:
        """``cropped``: the training images arrive Inception-cropped and flipped per sample (streamed data),
        so the batched transform does the rest only."""
        self.cfg, self.model, self.objective, self.plan, self.d, self.run_dir = cfg, model, objective, plan, d, run_dir
        mc, data = model.cfg, cfg.data  # augmentation at the model's own size; a low-resolution stage resizes after
        self.train_tf = TrainTransform(mc.img_size, data.crop_scale, data.crop_ratio, data.flip, mc.mean, mc.std,
                                       data.randaugment, data.random_erasing, in_chans=mc.in_chans,
                                       translate=data.translate, crop=not cropped)
        self.trained = objective.attach(model)  # the module the optimizer steps (model, or a wrapper of it)
        if plan.size_at(0) != tuple(model.cfg.img_size):  # before the optimizer and EMA exist: nothing else to update
            model.set_input_size(plan.size_at(0))
        self.optimizer = build_optimizer(self.trained, cfg.optim)
        self.ema = ModelEMA(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
        self.compile, self.compile_reason = use_compile(cfg.train.compile, d.device)
        self.net = self._wrap()
        self.gen = torch.Generator()  # augmentation stream, reseeded per micro-batch
        x = torch.zeros(plan.micro, mc.in_chans, *plan.size_at(0), device=d.device)  # a micro-batch's shape
        self.set_precision(agreed(choose_precision(cfg.train.precision, model, x), d))
        self.step, self.best, self.train_time = 0, -1.0, 0.0
        self.last_saved: int | None = None

    def set_precision(self, p: Precision) -> None:
        self.precision = p
        self.autocast_dtype = torch.bfloat16 if p.bf16 else None

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.d.device.type, dtype=torch.bfloat16, enabled=self.autocast_dtype is not None)

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated and saved: the EMA weights when averaging, else the model."""
        return self.ema.module if self.ema is not None else self.model

    def eval_transform(self) -> EvalTransform:
        """Test-time preprocessing at the model's current size, as its metadata defines it (as predict does)."""
        return EvalTransform.for_model(self.model.cfg)

    def resize(self, size: tuple[int, int]) -> None:
        """Train (and evaluate) at ``size`` from now on: position embeddings are resampled to the new
        grid (the paper's 2-D interpolation) in the model and its EMA, and get a fresh optimizer state."""
        if tuple(self.model.cfg.img_size) == tuple(size):
            return
        before = dict(self.trained.named_parameters())
        self.model.set_input_size(size)
        if self.ema is not None:
            self.ema.module.set_input_size(size)
        for name, new in self.trained.named_parameters():
            old = before[name]
            if new is not old:
                self.optimizer.state.pop(old, None)
                for g in self.optimizer.param_groups:
                    g["params"] = [new if p is old else p for p in g["params"]]
        self.net = self._wrap()  # DDP registers parameters when built: rebuild it around the new ones

    def _wrap(self) -> nn.Module:
        """The module a step calls: the trained module, inside DDP when there are several processes,
        compiled when train.compile says so."""
        net = self.trained
        if self.d.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(self.trained, device_ids=[self.d.device] if self.d.device.type == "cuda" else None)
        return torch.compile(net) if self.compile else net

    def stop_compiling(self, reason: str) -> None:
        """Train eagerly from the next call on (train.compile=auto after compiling failed)."""
        self.compile, self.compile_reason = False, reason
        self.net = self._wrap()

    def save(self, best: bool = False) -> Path | None:
        """Rank 0 writes RUN/checkpoints/step_N.pt (and best.pt); every process waits for it."""
        path = None
        if self.d.main:
            path = save_checkpoint(self.state_dict(), self.run_dir, self.cfg.train.keep_last, best=best)
        barrier(self.d)
        self.last_saved = self.step
        return path

    def state_dict(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "aug": self.gen.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        epoch, in_epoch = divmod(self.step, self.plan.steps_per_epoch)
        return {
            "step": self.step, "epoch": epoch, "step_in_epoch": in_epoch, "total_steps": self.plan.total_steps,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None, "rng": rng, "best": self.best,
            "pretext": self.objective.state_dict(),
            "train_time": self.train_time, "world": self.d.world, "config": self.cfg.to_dict(),
            "img_size": list(self.model.cfg.img_size), "bf16": self.precision.bf16,
        }

    def load_state_dict(self, st: dict[str, Any]) -> None:
        if st["step"] % self.plan.steps_per_epoch != st["step_in_epoch"]:
            raise ValueError(f"checkpoint at step {st['step']} was made with another number of steps per epoch "
                             f"(data size or data.batch_size changed); resume with the original settings")
        saved = st.get("config", {}).get("train", {}).get("objective", "classify")
        if saved != self.cfg.train.objective:
            raise ValueError(f"the checkpoint was trained with train.objective={saved}; resume with it, or start a "
                             f"new run (--out elsewhere) from its encoder: model.weights=<run>/model")
        self.resize(tuple(st.get("img_size", self.plan.sizes[0][1])))  # the stage the checkpoint was taken in
        self.model.load_state_dict(st["model"])
        if self.cfg.train.precision == "auto" and st.get("bf16", self.precision.bf16) != self.precision.bf16:
            self.set_precision(Precision(st["bf16"], "auto: as the run being resumed chose"))  # its own arithmetic
        if st["pretext"] is not None:
            self.objective.load_state_dict(st["pretext"])
        self.optimizer.load_state_dict(st["optimizer"])
        if self.ema is not None:
            if st["ema"] is None:
                raise ValueError("the checkpoint has no EMA state but train.ema_decay > 0; resume without EMA")
            self.ema.load_state_dict(st["ema"])
        torch.set_rng_state(st["rng"]["torch"])
        self.gen.set_state(st["rng"]["aug"])
        if "cuda" in st["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["rng"]["cuda"])
        self.step, self.best, self.train_time = int(st["step"]), float(st["best"]), float(st["train_time"])
        self.last_saved = self.step


def use_compile(setting: bool | str, device: torch.device) -> tuple[bool, str]:
    """Whether train.compile compiles the step here, and why (the run's first line says it). On a CPU,
    inductor writes C++: "auto" compiles only where a compiler is on PATH, so a bare machine still trains."""
    if setting != "auto":
        return bool(setting), ""
    if device.type == "cuda":
        return True, "auto: CUDA"
    for cxx in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if cxx and shutil.which(cxx):
            return True, f"auto: C++ compiler {cxx}"
    return False, "auto: no C++ compiler found (install g++ to compile)"
