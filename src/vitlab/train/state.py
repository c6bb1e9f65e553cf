"""What a training step changes and a checkpoint holds: the model (and the objective's wrapper around it),
optimizer, EMA, the augmentation stream, step counters; plus the switch to another image size at a stage.
How the model runs over processes (none / DDP / FSDP, compile) is strategy.py's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import EvalTransform, TrainTransform
from ..weights.runs import is_sharded_checkpoint
from ..weights.sharded import read_meta
from .config import Config
from .checkpoint import load_checkpoint, load_sharded, save_checkpoint, save_sharded
from .distributed import Dist, barrier
from .objectives import Objective
from .optim import ModelEMA, build_optimizer
from .plan import Plan
from .precision import Precision, agreed, choose_precision
from .strategy import Strategy


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
        self.ema = ModelEMA(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
        x = torch.zeros(plan.micro, mc.in_chans, *plan.size_at(0), device=d.device)  # a micro-batch's shape
        self.set_precision(agreed(choose_precision(cfg.train.precision, model, x), d))
        self.strategy = Strategy(cfg, d, sum(p.numel() for p in self.trained.parameters()), self.precision.bf16)
        self.strategy.shard(self.trained)  # fsdp: in place, before the optimizer sees the parameters
        if self.ema is not None:
            self.strategy.shard(self.ema.module)
        self.optimizer = build_optimizer(self.trained, cfg.optim, fused=self.strategy.fused_optimizer)
        self.net = self.strategy.wrap(self.trained)
        self.gen = torch.Generator()  # augmentation stream, reseeded per micro-batch
        self.step, self.best, self.train_time = 0, -1.0, 0.0
        self.last_saved: int | None = None

    def set_precision(self, p: Precision) -> None:
        self.precision = p
        self.autocast_dtype = torch.bfloat16 if p.bf16 else None

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.d.device.type, dtype=torch.bfloat16, enabled=self.autocast_dtype is not None)

    @property
    def compile(self) -> bool:
        return self.strategy.compile

    @property
    def compile_reason(self) -> str:
        return self.strategy.compile_reason

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated and saved: the EMA weights when averaging, else the model (under fsdp a gathered
        whole copy: every process must ask for it at the same time)."""
        return self.strategy.gathered(self.ema.module if self.ema is not None else self.model)

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
        self.net = self.strategy.wrap(self.trained)  # DDP registers parameters when built: rebuild it

    def stop_compiling(self, reason: str) -> None:
        """Train eagerly from the next call on (train.compile=auto after compiling failed)."""
        self.strategy.stop_compiling(reason)
        self.net = self.strategy.wrap(self.trained)

    def save(self, best: bool = False) -> Path | None:
        """Rank 0 writes RUN/checkpoints/step_N.pt (and best.pt); under fsdp every process writes its shards
        of step_N.dcp/ (and best.dcp/). Every process waits for it."""
        path = None
        keep = self.cfg.train.keep_last
        if self.strategy.sharded:
            path = save_sharded(self.state_dict(), self.run_dir, keep, best, self.d)
        elif self.d.main:
            path = save_checkpoint(self.state_dict(), self.run_dir, keep, best=best)
        barrier(self.d)
        self.last_saved = self.step
        return path

    def state_dict(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "aug": self.gen.get_state()}
        if torch.cuda.is_available() and not self.strategy.sharded:  # each micro-batch reseeds CUDA too
            rng["cuda"] = torch.cuda.get_rng_state_all()
        epoch, in_epoch = divmod(self.step, self.plan.steps_per_epoch)
        return {
            "step": self.step, "epoch": epoch, "step_in_epoch": in_epoch, "total_steps": self.plan.total_steps,
            "model": self.model.state_dict(), "optimizer": self._optimizer_state(),
            "ema": self.ema.state_dict() if self.ema else None, "rng": rng, "best": self.best,
            "pretext": self.objective.state_dict(),
            "train_time": self.train_time, "world": self.d.world, "config": self.cfg.to_dict(),
            "img_size": list(self.model.cfg.img_size), "bf16": self.precision.bf16,
        }

    def _optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state dict; under fsdp keyed by parameter name and sharded (DTensors)."""
        if not self.strategy.sharded:
            return self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(self.trained, self.optimizer)

    def read_checkpoint(self, path: Path) -> dict[str, Any]:
        """A saved state for ``load_state_dict``: a ``.pt`` file, or under fsdp a ``.dcp`` directory read into
        this run's sharded tensors (every process calls it)."""
        sharded = is_sharded_checkpoint(path)
        if sharded != self.strategy.sharded:
            made = "fsdp" if sharded else "ddp (or one process)"
            raise ValueError(f"{path} was saved under train.strategy={made} and cannot resume under "
                             f"train.strategy={self.cfg.train.strategy} here ({self.strategy.kind}): resume "
                             f"with train.strategy={'fsdp' if sharded else 'ddp'}, or start a new run (--out "
                             f"elsewhere) from its weights: model.weights={path}")
        if sharded:  # into tensors of the checkpoint's shapes: at the image size of the stage it was taken in
            self.resize(tuple(read_meta(path).get("img_size", self.plan.sizes[0][1])))
            return load_sharded(path, self.state_dict())
        return load_checkpoint(path, map_location=self.d.device)

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
        if self.strategy.sharded:
            from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

            set_optimizer_state_dict(self.trained, self.optimizer, st["optimizer"])
        else:
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

