"""The training loop: one optimizer step = accumulation x processes micro-batches, then log, eval, save.

images: uint8 dataset on the device -> step-indexed micro-batch -> batched augmentation -> mixup ->
model (bf16 autocast on CUDA) -> loss -> backward (DDP all-reduce) -> clip -> optimizer -> EMA ->
checkpoint. Every random draw of micro-batch k at step s (crop, flip, RandAugment, mixup, dropout,
stochastic depth) comes from a stream seeded by (seed, s, k), and the data order from (seed, epoch),
so a run resumed from any checkpoint, or split over another number of processes with the same global
batch, computes the same thing as an uninterrupted single run.

``train.objective=masked_patch`` swaps the labels for the paper's self-supervised pretext task
(appendix B.1.2): the encoder (built without a head) is wrapped in a MaskedPatchPredictor, whose
[mask] embedding and colour head are trained and checkpointed with it; ``RUN/model`` is the encoder
alone, ready for fine-tuning (``model.weights=RUN/model``).
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import EvalTransform, Mixup, TrainTransform, get_normalize, train_dev_split
from ..data.splits import open_run_data
from ..evaluate.metrics import EvalCounts, evaluate
from . import distributed as dd
from .checkpoint import latest_checkpoint, load_checkpoint, remove_partial, save_checkpoint
from .config import Config, config_from_dict, model_options
from .fit import check_channels, fit_model_options
from .optim import ModelEMA, build_optimizer, cycle_lr, set_lr


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN/inf; nothing was saved after the last good checkpoint."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    total_steps: int
    interrupted: int | None = None  # the signal number when stopped by SIGINT/SIGTERM
    checkpoint: Path | None = None
    final: dict[str, Any] | None = None  # final.json when the run completed


def build_model(cfg: Config, classes: list[str], options: dict[str, Any] | None = None) -> nn.Module:
    """The configured model, with its head sized for ``classes`` and the preprocessing metadata set
    (headless, ``num_classes=0``, for ``train.objective=masked_patch``). ``options``: ViTConfig fields
    (default: the recipe's model section; the trainer passes them completed from the data)."""
    from ..api import create_model
    from ..weights import load_model

    m, opts = cfg.model, dict(model_options(cfg) if options is None else options)
    n = 0 if cfg.train.objective == "masked_patch" else len(classes)
    opts.setdefault("num_classes", n)
    model = create_model(m.name, weights=m.weights, **opts) if m.name else load_model(m.weights, **opts)
    if m.reset_head:
        model.reset_classifier(n, drop_pre_logits=True)
    if model.cfg.num_classes != n:
        raise ValueError(f"model.num_classes={model.cfg.num_classes} but the data has {len(classes)} classes"
                         + (" (masked_patch pretraining needs num_classes=0)" if n == 0 else ""))
    if cfg.data.normalize is not None:
        model.cfg.mean, model.cfg.std = get_normalize(cfg.data.normalize)
    if n:
        model.cfg.class_names = tuple(classes)
    return model


def _loss(logits: Tensor, target: Tensor, kind: str) -> Tensor:
    """Softmax or sigmoid cross-entropy against soft targets (rows of ``target`` sum to 1)."""
    if kind == "sigmoid":  # summed over classes, as the official pretraining loss
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1).mean()
    return torch.sum(-target * F.log_softmax(logits, dim=1), dim=1).mean()


class Trainer:
    """Holds everything a run needs; ``run()`` trains to the end or until a signal/non-finite loss."""

    def __init__(self, cfg: Config, run_dir: Path, d: dd.Dist, progress: bool = True) -> None:
        self.cfg, self.run_dir, self.d, self.progress = cfg, Path(run_dir), d, progress
        r, data = cfg.train, cfg.data
        torch.set_num_threads(r.threads or max(1, (os.cpu_count() or 1) // d.local_world))
        torch.manual_seed(r.seed)  # model initialisation
        self.device = d.device
        self.bf16 = r.precision == "bf16" or (r.precision == "auto" and self.device.type == "cuda")

        run_data = open_run_data(data.dataset, self.run_dir, data.test_fraction, r.seed, data.data_dir,
                                 size=data.image_size or model_options(cfg).get("img_size"), on_error=data.on_error,
                                 cache=data.cache, write=d.main)
        train, self.test, self.test_name = run_data.train, run_data.test, run_data.test_name
        self.data_notes = run_data.notes
        if data.train_limit:
            train = train.subset(torch.arange(min(data.train_limit, len(train))))
        if data.dev_fraction > 0:
            train, self.eval_set = train_dev_split(train, data.dev_fraction, seed=r.seed)
            self.eval_name = "dev"
        else:
            self.eval_set, self.eval_name = self.test, "test"
        self.classes = list(train.classes)

        options, note = fit_model_options(data.dataset, train, model_options(cfg), cfg.model.name)
        if note:
            self.data_notes.append(note)
        self.model = build_model(cfg, self.classes, options).to(self.device)
        check_channels(self.model.cfg.in_chans, train, data.dataset, cfg.model.weights or cfg.model.name)
        self.model.set_grad_checkpointing(r.grad_checkpointing)
        mc = self.model.cfg
        self.train_tf = TrainTransform(mc.img_size, data.crop_scale, data.crop_ratio, data.flip, mc.mean, mc.std,
                                       data.randaugment, data.random_erasing, in_chans=mc.in_chans)
        self.mixup = Mixup(data.mixup_alpha, data.cutmix_alpha, data.mixup_prob, data.mixup_switch_prob,
                           data.label_smoothing, len(self.classes))
        self.masked: nn.Module | None = None  # the pretext wrapper for train.objective=masked_patch
        if r.objective == "masked_patch":
            from ..models.masked import MaskedPatchPredictor, pixel_range

            # Targets are cut from the normalised images, so the colour levels span black..white of this normalisation.
            self.masked = MaskedPatchPredictor(self.model, pixel_range=pixel_range(mc.mean, mc.std, mc.in_chans)).to(self.device)
        self.trained: nn.Module = self.masked if self.masked is not None else self.model
        self.mask_gen = torch.Generator(device=self.device)  # corruption stream, reseeded per micro-batch

        parts = data.accum_steps * d.world
        if data.batch_size % parts:
            raise ValueError(f"data.batch_size={data.batch_size} is not divisible by data.accum_steps x processes = {parts}")
        self.micro = data.batch_size // parts
        self.steps_per_epoch = len(train) // data.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"data.batch_size={data.batch_size} is larger than the training set ({len(train)} images)")
        s = cfg.schedule
        self.total_steps = s.steps or s.epochs * self.steps_per_epoch
        self.warmup = s.warmup_steps if s.warmup_steps is not None else round(s.warmup_epochs * self.steps_per_epoch)
        # Stages: (start step, train size) and the lr cycles (start step, peak, warmup steps) they begin.
        self.img_size = tuple(self.model.cfg.img_size)  # the model's size: final evaluation and saved weights
        self.sizes: list[tuple[int, tuple[int, int]]] = [(0, self.img_size)]
        cycles = {0: (0, cfg.optim.lr, self.warmup)}
        for st in s.stages or ():
            start = round(st.epoch * self.steps_per_epoch)
            self.sizes.append((start, (st.img_size,) * 2 if st.img_size else self.img_size))
            if st.lr is not None:
                cycles[start] = (start, st.lr, round(st.warmup_epochs * self.steps_per_epoch))
        self.cycles = sorted(cycles.values())
        for i, (_, size) in enumerate(self.sizes[1:]):  # a bad size fails now, not at its stage mid-run
            try:
                self.model.patch_embed.grid_size(size)
            except ValueError as e:
                raise ValueError(f"schedule.stages[{i}].img_size={size[0]}: {e}") from None
        if self.size_at(0) != self.img_size:  # before the optimizer and EMA exist: nothing else to update
            self.model.set_input_size(self.size_at(0))
        self.eval_tf = self._eval_transform()
        self.images, self.labels = train.images.to(self.device), train.labels.to(self.device)

        self.optimizer = build_optimizer(self.trained, cfg.optim)
        self.ema = ModelEMA(self.model, r.ema_decay) if r.ema_decay > 0 else None
        self.net = self._wrap()
        self.gen = torch.Generator()  # augmentation stream, reseeded per micro-batch
        self.step, self.best, self.train_time = 0, -1.0, 0.0
        self.last_saved: int | None = None
        self.last_eval: tuple[int, dict[str, Any]] | None = None  # (step, summary)
        self.stop_signal: int | None = None  # set by the signal handler, at any moment
        self.stop_agreed: int | None = None  # set at a step boundary once every process knows

    # -- stages ---------------------------------------------------------------------------------------
    def size_at(self, step: int) -> tuple[int, int]:
        return [size for start, size in self.sizes if start <= step][-1]

    def _resize(self, size: tuple[int, int]) -> None:
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
        self.eval_tf = self._eval_transform()

    def _wrap(self) -> nn.Module:
        """The module a step calls: the trained model, inside DDP when there are several processes."""
        if self.d.world == 1:
            return self.trained
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(self.trained, device_ids=[self.device] if self.device.type == "cuda" else None)

    def _eval_transform(self) -> EvalTransform:
        """Test-time preprocessing at the model's current size."""
        mc = self.model.cfg
        return EvalTransform(mc.img_size, mc.mean, mc.std, self.cfg.data.eval_crop_pct, in_chans=mc.in_chans)

    # -- state ----------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "aug": self.gen.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
        return {
            "step": self.step, "epoch": epoch, "step_in_epoch": in_epoch, "total_steps": self.total_steps,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None, "rng": rng, "best": self.best,
            "pretext": self._pretext_state(),
            "train_time": self.train_time, "world": self.d.world, "config": self.cfg.to_dict(),
            "img_size": list(self.model.cfg.img_size),
        }

    def load_state(self, st: dict[str, Any]) -> None:
        if st["step"] % self.steps_per_epoch != st["step_in_epoch"]:
            raise ValueError(f"checkpoint at step {st['step']} was made with another number of steps per epoch "
                             f"(data size or data.batch_size changed); resume with the original settings")
        saved = st.get("config", {}).get("train", {}).get("objective", "classify")
        if saved != self.cfg.train.objective:
            raise ValueError(f"the checkpoint was trained with train.objective={saved}; resume with it, or start a "
                             f"new run (--out elsewhere) from its encoder: model.weights=<run>/model")
        self._resize(tuple(st.get("img_size", self.img_size)))  # the stage the checkpoint was taken in
        self.model.load_state_dict(st["model"])
        if self.masked is not None:
            missing, unexpected = self.masked.load_state_dict(st["pretext"], strict=False)
            if unexpected or any(not k.startswith("model.") for k in missing):
                raise ValueError(f"the checkpoint's masked-patch state does not fit: missing {missing}, unexpected {unexpected}")
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

    def _pretext_state(self) -> dict[str, Tensor] | None:
        """The masked-patch [mask] embedding and head (the encoder is saved under "model")."""
        if self.masked is None:
            return None
        return {k: v for k, v in self.masked.state_dict().items() if not k.startswith("model.")}

    def save(self, best: bool = False) -> Path | None:
        path = None
        if self.d.main:
            path = save_checkpoint(self.state(), self.run_dir, self.cfg.train.keep_last, best=best)
        dd.barrier(self.d)
        self.last_saved = self.step
        return path

    # -- one optimizer step ---------------------------------------------------------------------------
    def train_step(self, order: Tensor) -> tuple[float, float]:
        cfg, d = self.cfg, self.d
        in_epoch = self.step % self.steps_per_epoch
        accum = cfg.data.accum_steps
        set_lr(self.optimizer, cycle_lr(self.step, self.cycles, self.total_steps, cfg.schedule))
        size = tuple(self.model.cfg.img_size)
        loss_sum = torch.zeros((), device=self.device)
        for a in range(accum):
            k = a * d.world + d.rank
            idx = dd.micro_batch_indices(order, in_epoch, cfg.data.batch_size, self.micro, k).to(self.device)
            seed = dd.stream_seed(cfg.train.seed, self.step, k)
            self.gen.manual_seed(seed)
            torch.manual_seed(seed)  # dropout and stochastic depth
            x = self.train_tf(self.images[idx], self.gen)
            if tuple(x.shape[-2:]) != size:  # a low-resolution stage (schedule.stages)
                x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            if self.masked is None:
                x, target = self.mixup(x, self.labels[idx], self.gen)
            else:
                self.mask_gen.manual_seed(seed)
            sync = contextlib.nullcontext() if d.world == 1 or a == accum - 1 else self.net.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    out = self.net(x) if self.masked is None else self.net(x, self.mask_gen)
                if self.masked is None:
                    loss = _loss(out.float(), target, cfg.optim.loss)
                else:
                    loss = F.cross_entropy(out.logits.float(), out.targets)
                (loss / accum).backward()
            loss_sum += loss.detach()
        clip = cfg.optim.clip_grad_norm
        params = [p for p in self.trained.parameters() if p.grad is not None]
        gnorm = torch.nn.utils.clip_grad_norm_(params, clip, foreach=True) if clip else torch.zeros((), device=self.device)
        stat = torch.stack([loss_sum / accum, gnorm.float(), torch.tensor(float(self.stop_signal or 0), device=self.device)])
        stat = dd.all_sum(stat.double(), d).cpu()
        loss_val, gnorm_val = float(stat[0]) / d.world, float(stat[1]) / d.world
        if stat[2] > 0:  # some process was signalled: all stop after this step, together
            self.stop_agreed = self.stop_signal or signal.SIGTERM
        if not (math.isfinite(loss_val) and math.isfinite(gnorm_val)):
            self.optimizer.zero_grad(set_to_none=True)
            last = latest_checkpoint(self.run_dir)
            raise NonFiniteLossError(
                f"non-finite {'loss' if not math.isfinite(loss_val) else 'gradient norm'} ({loss_val:.4g}, grad norm "
                f"{gnorm_val:.4g}) at step {self.step} (epoch {self.step // self.steps_per_epoch}); stopped without "
                f"saving this state. Last good checkpoint: {last or 'none yet'}. Lower optim.lr, keep "
                f"optim.clip_grad_norm on, or use train.precision=fp32, then run again to resume from it"
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return loss_val, gnorm_val

    # -- evaluation -----------------------------------------------------------------------------------
    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def eval_summary(self, ds) -> dict[str, Any]:
        """The objective's evaluation: top-1/top-5/loss/per-class, or masked-patch loss and accuracy."""
        return self.evaluate(ds).summary() if self.masked is None else self.evaluate_masked(ds)

    @torch.inference_mode()
    def evaluate_masked(self, ds) -> dict[str, Any]:
        """Masked-patch cross-entropy and accuracy (%) over the corrupted patches; the corruption comes from
        a generator seeded by train.seed, so successive evaluations compare like with like."""
        images = ds.images[self.d.rank :: self.d.world]
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.train.seed)
        was_training = self.masked.training
        self.masked.eval()
        total = torch.zeros(3, dtype=torch.float64, device=self.device)
        bs = self.cfg.data.eval_batch_size
        for i in range(0, len(images), bs):
            x = self.eval_tf(images[i : i + bs].to(self.device, non_blocking=True))
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = self.masked(x, gen, encoder=self.eval_model)
            logits = out.logits.float()
            total[0] += F.cross_entropy(logits, out.targets, reduction="sum").double()
            total[1] += (logits.argmax(1) == out.targets).sum()
            total[2] += len(out.targets)
        self.masked.train(was_training)
        total = dd.all_sum(total, self.d).cpu()
        n = max(float(total[2]), 1.0)
        return {"masked_loss": float(total[0]) / n, "masked_acc": 100.0 * float(total[1]) / n, "n": len(ds)}

    def evaluate(self, ds) -> EvalCounts:
        """Each process evaluates every world-th image; counts are summed across processes."""
        sl = slice(self.d.rank, None, self.d.world)
        counts = evaluate(self.eval_model, ds.images[sl], ds.labels[sl], self.eval_tf, self.cfg.data.eval_batch_size,
                          self.classes, torch.bfloat16 if self.bf16 else None)
        counts.load_tensor(dd.all_sum(counts.as_tensor().to(self.device), self.d).cpu())
        return counts

    # -- the run --------------------------------------------------------------------------------------
    def resume(self, resume: str | Path | bool | None) -> Path | None:
        """None: continue from RUN/checkpoints when present; a path: from that file; False: fresh only."""
        if self.d.main:
            remove_partial(self.run_dir)
        latest = latest_checkpoint(self.run_dir)
        if resume is False:
            if latest is not None:
                raise ValueError(f"{self.run_dir} already has checkpoints ({latest.name}); resume it (the default) "
                                 "or choose another --out, so nothing saved is overwritten")
            return None
        path = Path(resume) if isinstance(resume, (str, Path)) else latest
        if path is None:
            return None
        st = load_checkpoint(path, map_location=self.device)
        self._warn_changes(st.get("config", {}), path)
        self.load_state(st)
        return path

    def _warn_changes(self, saved: dict[str, Any], path: Path) -> None:
        if not self.d.main:
            return
        try:
            old = config_from_dict(saved).to_dict()
        except (KeyError, ValueError) as e:  # written by another vitlab version
            print(f"note: cannot compare the config saved in {path} with this one ({e})")
            return
        new = self.cfg.to_dict()
        diff = [f"{s}.{k}: {old[s].get(k)!r} -> {v!r}" for s in new for k, v in new[s].items() if old[s].get(k) != v]
        if diff:
            print(f"note: resuming {path} with a changed config (the result will differ from an uninterrupted run):\n  "
                  + "\n  ".join(diff))

    def run(self, resume: str | Path | bool | None = None) -> TrainResult:
        from .runlog import RunLogger

        resumed = self.resume(resume)
        log = RunLogger(self.run_dir, self.step, enabled=self.d.main, tensorboard=True)
        if self.d.main:
            (self.run_dir / "config.yaml").write_text(self.cfg.to_yaml())
            for note in self.data_notes:
                log.info(note)
            log.info(self._banner(resumed))
        old_handlers = self._install_signals()
        bar = log.progress(self.total_steps, self.step, self.progress)
        t_start, order_epoch, order = time.perf_counter(), -1, None
        window = [0.0, 0, 0.0]  # loss sum, steps, seconds in train_step (eval and saving excluded)
        try:
            while self.step < self.total_steps:
                epoch = self.step // self.steps_per_epoch
                if epoch != order_epoch:
                    order, order_epoch = dd.epoch_order(len(self.labels), self.cfg.train.seed, epoch), epoch
                if self.size_at(self.step) != tuple(self.model.cfg.img_size):
                    self._resize(self.size_at(self.step))
                    log.info(f"step {self.step}: training at {self.model.cfg.img_size[0]}x{self.model.cfg.img_size[1]}")
                t0 = time.perf_counter()
                loss, gnorm = self.train_step(order)
                dt = time.perf_counter() - t0
                self.train_time += dt
                window[0] += loss
                window[1] += 1
                window[2] += dt
                bar.update(1)
                if self.step % self.cfg.train.log_every_steps == 0 or self.step == self.total_steps:
                    rec = {"step": self.step, "epoch": self.step / self.steps_per_epoch, "train_loss": window[0] / window[1],
                           "lr": self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0].get("lr_scale", 1.0),
                           "grad_norm": gnorm, "img_size": self.model.cfg.img_size[0], "img_per_s": window[1] * self.cfg.data.batch_size / max(window[2], 1e-9)}
                    log.scalars(rec)
                    bar.set_postfix(loss=f"{rec['train_loss']:.4f}", lr=f"{rec['lr']:.2e}", img_s=f"{rec['img_per_s']:.0f}")
                    window = [0.0, 0, 0.0]
                self._after_step(log)
                if self.stop_agreed is not None:
                    path = self.save() if self.last_saved != self.step else latest_checkpoint(self.run_dir)
                    return TrainResult(self.run_dir, self.step, self.total_steps, self.stop_agreed, path)
            if self.last_saved != self.step:
                self.save()
            self._resize(self.img_size)  # the final evaluation and the saved model use the model's own size
            final = self._finish(log, time.perf_counter() - t_start)
            return TrainResult(self.run_dir, self.step, self.total_steps, None, latest_checkpoint(self.run_dir), final)
        finally:
            bar.close()
            log.close()
            self._restore_signals(old_handlers)

    def _after_step(self, log) -> None:
        r = self.cfg.train
        end_of_epoch = self.step % self.steps_per_epoch == 0
        epoch = self.step // self.steps_per_epoch
        last = self.step == self.total_steps
        best = False
        if (end_of_epoch and epoch % r.eval_every_epochs == 0) or last:
            s = self.eval_summary(self.eval_set)
            self.last_eval = (self.step, s)
            e, at = self.eval_name, f"step {self.step} epoch {self.step / self.steps_per_epoch:.2f}"
            if self.masked is None:
                score, rec = s["top1"], {f"{e}_top1": s["top1"], f"{e}_top5": s["top5"], f"{e}_loss": s["loss"]}
                log.info(f"{at}: {e} top-1 {s['top1']:.2f}% top-5 {s['top5']:.2f}% loss {s['loss']:.4f}")
            else:
                score, rec = s["masked_acc"], {f"{e}_masked_acc": s["masked_acc"], f"{e}_masked_loss": s["masked_loss"]}
                log.info(f"{at}: {e} masked-patch accuracy {s['masked_acc']:.2f}% loss {s['masked_loss']:.4f}")
            log.scalars({"step": self.step, "epoch": self.step / self.steps_per_epoch, **rec})
            best = score > self.best
            self.best = max(self.best, score)
        if end_of_epoch or last or best or (r.ckpt_every_steps and self.step % r.ckpt_every_steps == 0):
            self.save(best=best)

    def _finish(self, log, wall: float) -> dict[str, Any] | None:
        from ..models.pretrained import save_pretrained
        from .report import write_outputs

        if self.last_eval is not None and self.last_eval[0] == self.step and self.eval_name == "test":
            s = self.last_eval[1]
        else:
            s = self.eval_summary(self.test)
        if not self.d.main:
            return None
        save_pretrained(self.eval_model, self.run_dir / "model")  # masked_patch: the encoder, without the pretext head
        common = {"steps": self.step, "epochs": self.step / self.steps_per_epoch, "train_time_s": self.train_time,
                  "wall_time_s_this_process": wall, "processes": self.d.world, "device": str(self.device),
                  "ema": self.ema is not None}
        if self.masked is None:
            final = {"objective": "classify", "split": self.test_name, "top1": s["top1"], "top5": s["top5"], "loss": s["loss"],
                     "per_class": s["per_class"], "n": s["n"], "best_" + self.eval_name + "_top1": self.best,
                     **common, "confusion": s["confusion"]}
            result = f"{self.test_name} top-1 {s['top1']:.2f}% top-5 {s['top5']:.2f}%"
        else:
            final = {"objective": "masked_patch", "split": self.test_name, "masked_acc": s["masked_acc"],
                     "masked_loss": s["masked_loss"], "n": s["n"], "best_" + self.eval_name + "_masked_acc": self.best,
                     **common}
            result = f"{self.test_name} masked-patch accuracy {s['masked_acc']:.2f}% loss {s['masked_loss']:.4f}"
        write_outputs(self.run_dir, self.cfg, final, self.classes)
        log.info(f"done: {result} in {self.train_time / 60:.1f} min of training; wrote {self.run_dir}/model, "
                 "final.json, report.md, plots")
        return final

    def _banner(self, resumed: Path | None) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        c = self.cfg
        return (f"{'resuming from ' + str(resumed) + ' at step ' + str(self.step) if resumed else 'training'}: "
                f"{c.model.name or c.model.weights} ({n / 1e6:.2f}M params) on {c.data.dataset} "
                f"({len(self.labels)} train / {len(self.eval_set)} "
                f"{self.test_name if self.eval_name == 'test' else self.eval_name}), {self.total_steps} steps "
                f"x batch {c.data.batch_size} ({self.d.world} process(es) x {c.data.accum_steps} accumulation x "
                f"{self.micro}), {self.device}{' bf16' if self.bf16 else ' fp32'}, {torch.get_num_threads()} threads")

    # -- signals --------------------------------------------------------------------------------------
    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}

        def handler(signum, frame):
            if self.stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now
            self.stop_signal = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return old

    @staticmethod
    def _restore_signals(old: dict[int, Any]) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)


def train(cfg: Config, out: str | os.PathLike, resume: str | Path | bool | None = None,
          progress: bool = True) -> TrainResult:
    """Train ``cfg`` into run directory ``out``; continues from ``out/checkpoints`` when present.

    ``resume``: None (auto), a checkpoint path, or False (refuse to touch a run that has checkpoints).
    Under torchrun every process calls this; rank 0 logs and writes.
    """
    cfg.validate()
    d = dd.setup(cfg.train.device)
    threads = torch.get_num_threads()
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        return Trainer(cfg, Path(out), d, progress).run(resume)
    finally:
        torch.set_num_threads(threads)  # callers (notebooks, test suites) keep their setting
        dd.teardown()
