"""A run's wiring around its TrainState: the recipe, the processes, the step plan, the input pipeline, the
objective, the arithmetic (precision) and how the trained module runs over processes (strategy, compile).
It builds the state in the order the recipe's seed expects, saves and resumes it, and switches the image
size at a stage. The loop (loop.py) reads the run; what a checkpoint holds is state.py's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.input import InputPipeline
from . import checkpoint
from .config import Config
from .distributed import Dist
from .objectives import Objective
from .optim import ModelEMA, build_optimizer
from .plan import Plan
from .precision import Precision, agreed, choose_precision
from .state import TrainState
from .strategy import Strategy


class Run:
    def __init__(self, cfg: Config, d: Dist, run_dir: Path, plan: Plan, inputs: InputPipeline, objective: Objective,
                 model: nn.Module) -> None:
        """Attach the objective, move the model to the first stage's size, make the EMA, choose the precision,
        shard (fsdp), build the optimizer and wrap (ddp, compile): everything before step 0."""
        self.cfg, self.d, self.run_dir, self.plan, self.inputs, self.objective = cfg, d, run_dir, plan, inputs, objective
        trained = objective.attach(model)  # the module the optimizer steps (model, or a wrapper of it)
        if plan.size_at(0) != tuple(model.cfg.img_size):  # before the optimizer and EMA exist: nothing else to update
            model.set_input_size(plan.size_at(0))
        ema = ModelEMA(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
        x = torch.zeros(plan.micro, model.cfg.in_chans, *plan.size_at(0), device=d.device)  # a micro-batch's shape
        self.set_precision(agreed(choose_precision(cfg.train.precision, model, x), d))
        self.strategy = Strategy(cfg, d, sum(p.numel() for p in trained.parameters()), self.precision.bf16)
        self.strategy.shard(trained)  # fsdp: in place, before the optimizer sees the parameters
        if ema is not None:
            self.strategy.shard(ema.module)
        optimizer = build_optimizer(trained, cfg.optim, fused=self.strategy.fused_optimizer)
        self.net = self.strategy.wrap(trained)
        self.state = TrainState(model, trained, optimizer, ema, objective)

    # -- arithmetic and execution ----------------------------------------------------------------------
    def set_precision(self, p: Precision) -> None:
        self.precision = p
        self.autocast_dtype = torch.bfloat16 if p.bf16 else None

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.d.device.type, dtype=torch.bfloat16, enabled=self.autocast_dtype is not None)

    @property
    def model(self) -> nn.Module:
        return self.state.model

    @property
    def compile(self) -> bool:
        return self.strategy.compile

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated and saved: the EMA weights when averaging, else the model (under fsdp a gathered
        whole copy: every process must ask for it at the same time)."""
        s = self.state
        return self.strategy.gathered(s.ema.module if s.ema is not None else s.model)

    def resize(self, size: tuple[int, int]) -> None:
        """Train (and evaluate) at ``size`` from now on: position embeddings are resampled to the new
        grid (the paper's 2-D interpolation) in the model and its EMA, and get a fresh optimizer state."""
        s = self.state
        if tuple(s.model.cfg.img_size) == tuple(size):
            return
        before = dict(s.trained.named_parameters())
        s.model.set_input_size(size)
        if s.ema is not None:
            s.ema.module.set_input_size(size)
        for name, new in s.trained.named_parameters():
            old = before[name]
            if new is not old:
                s.optimizer.state.pop(old, None)
                for g in s.optimizer.param_groups:
                    g["params"] = [new if p is old else p for p in g["params"]]
        self.net = self.strategy.wrap(s.trained)  # DDP registers parameters when built: rebuild it

    def stop_compiling(self, reason: str) -> None:
        """Train eagerly from the next call on (train.compile=auto after compiling failed)."""
        self.strategy.stop_compiling(reason)
        self.net = self.strategy.wrap(self.state.trained)

    # -- checkpoints -------------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """The state and what is needed to resume it as this run: where in the plan, the recipe, the processes,
        the image size of the stage and the arithmetic."""
        s = self.state
        epoch, in_epoch = divmod(s.step, self.plan.steps_per_epoch)
        return {**s.state_dict(self.strategy.sharded), "epoch": epoch, "step_in_epoch": in_epoch,
                "total_steps": self.plan.total_steps, "world": self.d.world, "config": self.cfg.to_dict(),
                "img_size": list(s.model.cfg.img_size), "bf16": self.precision.bf16}

    def save(self, best: bool = False) -> Path | None:
        """Write a checkpoint of this step (RUN/checkpoints; the format is checkpoint.py's choice)."""
        path = checkpoint.save(self.checkpoint_state(), self.run_dir, self.cfg.train.keep_last, best, self.d,
                               self.strategy.sharded)
        self.state.last_saved = self.state.step
        return path

    def read_checkpoint(self, path: Path) -> dict[str, Any]:
        """A saved state for ``load``; a sharded one is read into this run's tensors at the checkpoint's image
        size (the stage it was taken in)."""
        def like(meta: dict[str, Any]) -> dict[str, Any]:
            self.resize(tuple(meta.get("img_size", self.plan.sizes[0][1])))
            return self.checkpoint_state()

        how = f"train.strategy={self.cfg.train.strategy} here ({self.strategy.kind})"
        return checkpoint.load(path, self.d.device, self.strategy.sharded, how, like)

    def load(self, saved: dict[str, Any]) -> None:
        """Continue from ``saved`` (read_checkpoint's): refused when it was made with another number of steps per
        epoch or another objective; its stage's image size and its arithmetic (under precision=auto) kept."""
        if saved["step"] % self.plan.steps_per_epoch != saved["step_in_epoch"]:
            raise ValueError(f"checkpoint at step {saved['step']} was made with another number of steps per epoch "
                             f"(data size or data.batch_size changed); resume with the original settings")
        objective = saved.get("config", {}).get("train", {}).get("objective", "classify")
        if objective != self.cfg.train.objective:
            raise ValueError(f"the checkpoint was trained with train.objective={objective}; resume with it, or start "
                             f"a new run (--out elsewhere) from its encoder: model.weights=<run>/model")
        self.resize(tuple(saved.get("img_size", self.plan.sizes[0][1])))  # the stage the checkpoint was taken in
        if self.cfg.train.precision == "auto" and saved.get("bf16", self.precision.bf16) != self.precision.bf16:
            self.set_precision(Precision(saved["bf16"], "auto: as the run being resumed chose"))  # its own arithmetic
        self.state.load_state_dict(saved, self.strategy.sharded)
