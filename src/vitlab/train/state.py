"""What a training step changes and a checkpoint holds: the model (and the module the optimizer trains: the
model, or the objective's wrapper around it), the optimizer, the EMA, the augmentation stream and the step
counters. How they were built and how the step runs (precision, strategy, compile, input) is the run's
wiring (run.py); where a checkpoint is written and in which format is checkpoint.py's.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .objectives import Objective
from .optim import ModelEMA


class TrainState:
    def __init__(self, model: nn.Module, trained: nn.Module, optimizer: torch.optim.Optimizer, ema: ModelEMA | None,
                 objective: Objective) -> None:
        """``trained``: the module the optimizer steps (``objective.attach(model)``); the objective's own
        parameters (a pretext head) are saved with the state."""
        self.model, self.trained, self.optimizer, self.ema, self.objective = model, trained, optimizer, ema, objective
        self.gen = torch.Generator()  # augmentation stream, reseeded per micro-batch
        self.step, self.best, self.train_time = 0, -1.0, 0.0
        self.last_saved: int | None = None  # the step of the latest checkpoint written or resumed from

    def state_dict(self, sharded: bool) -> dict[str, Any]:
        """The tensors and counters of a checkpoint (``sharded``: under fsdp, the optimizer state keyed by
        parameter name and sharded)."""
        rng = {"torch": torch.get_rng_state(), "aug": self.gen.get_state()}
        if torch.cuda.is_available() and not sharded:  # each micro-batch reseeds CUDA too
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"step": self.step, "model": self.model.state_dict(), "optimizer": self._optimizer_state(sharded),
                "ema": self.ema.state_dict() if self.ema else None, "rng": rng, "best": self.best,
                "pretext": self.objective.state_dict(), "train_time": self.train_time}

    def _optimizer_state(self, sharded: bool) -> dict[str, Any]:
        if not sharded:
            return self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(self.trained, self.optimizer)

    def load_state_dict(self, saved: dict[str, Any], sharded: bool) -> None:
        """Everything ``state_dict`` saved, into this state (the model at the checkpoint's image size already)."""
        self.model.load_state_dict(saved["model"])
        if saved["pretext"] is not None:
            self.objective.load_state_dict(saved["pretext"])
        if sharded:
            from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

            set_optimizer_state_dict(self.trained, self.optimizer, saved["optimizer"])
        else:
            self.optimizer.load_state_dict(saved["optimizer"])
        if self.ema is not None:
            if saved["ema"] is None:
                raise ValueError("the checkpoint has no EMA state but train.ema_decay > 0; resume without EMA")
            self.ema.load_state_dict(saved["ema"])
        torch.set_rng_state(saved["rng"]["torch"])
        self.gen.set_state(saved["rng"]["aug"])
        if "cuda" in saved["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
        self.step, self.best, self.train_time = int(saved["step"]), float(saved["best"]), float(saved["train_time"])
        self.last_saved = self.step
