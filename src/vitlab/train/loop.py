"""The training loop: one optimizer step = accumulation x processes micro-batches, then log, eval, save.

images: step-indexed micro-batch (vitlab.data.sampler) -> uint8 images from the batch provider (gathered
on the device for in-memory data; decoded, cropped and resized per sample by DataLoader workers for data
read from disk, vitlab.data.pipeline) -> batched augmentation -> objective (mixup, model in bf16 autocast
on CUDA, loss) -> backward (DDP all-reduce) -> clip -> optimizer -> EMA -> checkpoint. Every random draw
of micro-batch k at step s (crop, flip, RandAugment, mixup, masking, dropout, stochastic depth) comes from
a stream seeded by (seed, s, k) (a sample's crop: (seed, s, k, j)), and the data order from (seed, epoch),
so a run resumed from any checkpoint, or split over another number of processes with the same global
batch, computes the same thing as an uninterrupted single run. (Tar shards are read shard by shard by
default, an order that also depends on the processes and workers: vitlab.data.shard_order.)

What is learned (labels, or masked patches) is the objective's business (objectives.py); the step
arithmetic is planned up front (plan.py); the splits and the model come from setup.py, and every image
through the input pipeline (vitlab.data.input); state.py holds what a checkpoint saves, run.py the wiring
around it (precision, strategy, compile) and checkpoint.py where and in which format it is written.
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
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from ..data.input import Batches, InputPipeline, Layout
from ..utils.figures import rounded
from ..utils.io import atomic_write
from ..weights.runs import CONFIG_FILE, MODEL_DIR, SKIPPED_FILE
from . import distributed as dd
from .checkpoint import latest_checkpoint, remove_partial
from .config import Config, config_from_dict
from .objectives import EvalSetup, make_objective
from .optim import set_lr
from .plan import make_plan
from .run import Run
from .runlog import Pace, RunLogger, train_line
from .setup import build_run_model, load_data
from .strategy import clip_grad_norm


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


def train(cfg: Config, out: str | os.PathLike, resume: str | Path | bool | None = None,
          progress: bool = True) -> TrainResult:
    """Train ``cfg`` into run directory ``out``; continues from ``out/checkpoints`` when present.

    ``resume``: None (auto), a checkpoint path, or False (refuse to touch a run that has checkpoints).
    Under torchrun every process calls this; rank 0 logs and writes.
    """
    cfg.validate()
    d = dd.setup(cfg.train.device)
    threads = torch.get_num_threads()
    agreed = False  # every process leaves the same way (not one process's own error): a final barrier is safe
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        result = _run(cfg, Path(out), d, resume, progress)
        agreed = True
        return result
    except NonFiniteLossError:
        agreed = True  # the loss is summed over processes: all of them stop at this step
        raise
    finally:
        torch.set_num_threads(threads)  # callers (notebooks, test suites) keep their setting
        dd.teardown(d, agreed)


def _run(cfg: Config, run_dir: Path, d: dd.Dist, resume: str | Path | bool | None, progress: bool) -> TrainResult:
    run = _setup(cfg, run_dir, d)
    resumed = _resume(run, resume)
    batches = run.inputs.train_batches(run.state.step)  # from the current step: a resumed run reads no skipped sample
    try:
        return _loop(run, batches, resumed, progress)
    finally:
        batches.close()


def _loop(run: Run, batches: Batches, resumed: Path | None, progress: bool) -> TrainResult:
    cfg, d, run_dir, plan, st, r = run.cfg, run.d, run.run_dir, run.plan, run.state, run.cfg.train
    log = RunLogger(run_dir, st.step, enabled=d.main, tensorboard=True)
    if d.main:
        atomic_write(run_dir / CONFIG_FILE, lambda tmp: tmp.write_text(cfg.to_yaml()))
        for note in run.inputs.describe():
            log.info(note)
        log.info(_banner(run, resumed))
    t_start, reported = time.perf_counter(), 0  # reported: unreadable files logged so far
    last_eval: tuple[int, dict[str, Any]] | None = None  # (step, summary) of the latest evaluation
    # loss sum, steps, then the seconds in train_step and their steps (eval, saving and compiling excluded)
    window = [0.0, 0, 0.0, 0]
    pace = Pace()
    compiling = run.compile  # the next step compiles: the first one, and the first after a stage's resize
    with _stop_signals() as signalled, log, log.progress(plan.total_steps, st.step, progress) as bar:
        while st.step < plan.total_steps:
            if plan.size_at(st.step) != tuple(st.model.cfg.img_size):
                run.resize(plan.size_at(st.step))
                log.info(f"step {st.step}: training at {st.model.cfg.img_size[0]}x{st.model.cfg.img_size[1]}")
                compiling = run.compile
            loss, gnorm, stop, dt = _timed_step(run, log, compiling, batches, signalled[0])
            timed = not compiling  # a compiling step's seconds say nothing of the speed
            compiling = False
            pace.stepped(st.step)
            st.train_time += dt
            window = [window[0] + loss, window[1] + 1, window[2] + dt * timed, window[3] + timed]
            bar.update(1)
            if st.step % r.log_every_steps == 0 or st.step == plan.total_steps:
                _log_train(log, bar, run, window, gnorm, pace.left(st.step, plan.total_steps))
                window = [0.0, 0, 0.0, 0]
                reported = _report_skipped(run, batches, log, reported)
            if (s := _evaluate_and_save(run, log)) is not None:
                last_eval = (st.step, s)
            if stop is not None:  # every process saw the signal at the same step
                _report_skipped(run, batches, log, reported)
                path = run.save() if st.last_saved != st.step else latest_checkpoint(run_dir)
                return TrainResult(run_dir, st.step, plan.total_steps, stop, path)
        if st.last_saved != st.step:
            run.save()
        _report_skipped(run, batches, log, reported)
        if tuple(st.model.cfg.img_size) != tuple(plan.sizes[0][1]):
            last_eval = None  # made at a stage's size: final.json must report the model at its own size
        run.resize(plan.sizes[0][1])  # the final evaluation and the saved model use the model's own size
        final = _finish(run, log, last_eval, time.perf_counter() - t_start)
        return TrainResult(run_dir, st.step, plan.total_steps, None, latest_checkpoint(run_dir), final)


def _setup(cfg: Config, run_dir: Path, d: dd.Dist) -> Run:
    """Splits, model (seeded by train.seed), step plan, input pipeline, objective, optimizer: everything before
    step 0."""
    r = cfg.train
    torch.set_num_threads(r.threads or max(1, (os.cpu_count() or 1) // d.local_world))
    torch.manual_seed(r.seed)  # model initialisation
    data = load_data(cfg, run_dir, write=d.main)
    model = build_run_model(cfg, data).to(d.device)
    model.set_grad_checkpointing(r.grad_checkpointing)
    plan = make_plan(cfg, len(data.train), d.world, tuple(model.cfg.img_size),
                     lambda size: model.patch_embed.grid_size(size), rank=d.rank)
    layout = Layout.of(d.world, d.rank, d.local_world, d.device, cfg.data.workers)
    inputs = InputPipeline(cfg.data, data, plan.grid, layout, model.cfg)  # augmentation at the model's own size
    return Run(cfg, d, run_dir, plan, inputs, make_objective(cfg, data.classes), model)


def _timed_step(run: Run, log: RunLogger, compiling: bool,
                *step_args: Any) -> tuple[float, float, int | None, float]:
    """A step (``_step_or_eager``) and its seconds; a step that compiles is announced before and timed after."""
    if compiling:
        log.info(f"step {run.state.step}: compiling the model (torch.compile)...")
    t0 = time.perf_counter()
    loss, gnorm, stop = _step_or_eager(run, log, *step_args)
    dt = time.perf_counter() - t0
    if compiling and run.compile:  # (when compiling failed, _step_or_eager said so)
        log.info(f"step {run.state.step}: compiled in {dt:.1f} s")
    return loss, gnorm, stop, dt


def _step_or_eager(run: Run, log: RunLogger, *step_args: Any) -> tuple[float, float, int | None]:
    """train_step; under train.compile=auto a step whose compiling fails (no usable C++ toolchain, say) runs
    again eagerly, and the run goes on without compiling. An explicit train.compile=true keeps the error."""
    try:
        return train_step(run, *step_args)
    except torch._dynamo.exc.BackendCompilerFailed as e:
        if not (run.compile and run.cfg.train.compile == "auto"):
            raise
        run.state.optimizer.zero_grad(set_to_none=True)  # the failed step applied nothing; drop what it accumulated
        run.stop_compiling(f"auto: compiling failed ({type(e).__name__})")
        log.info(f"step {run.state.step}: torch.compile failed ({str(e).strip().splitlines()[0][:160]}); training "
                 "eagerly from here (train.compile=false skips compiling)")
        return train_step(run, *step_args)


def train_step(run: Run, batches: Batches, signalled: int | None) -> tuple[float, float, int | None]:
    """One optimizer step. Returns the mean loss and gradient norm over processes, and the signal to stop
    on when any process was signalled (so that all stop after the same step)."""
    cfg, d, plan, st = run.cfg, run.d, run.plan, run.state
    accum = cfg.data.accum_steps
    augment = run.inputs.augmentation.batched
    set_lr(st.optimizer, plan.lr_at(st.step))
    size = tuple(st.model.cfg.img_size)
    loss_sum = torch.zeros((), device=d.device)
    for a in range(accum):
        k = a * d.world + d.rank  # this micro-batch's index in the global batch
        images, labels = batches.get(st.step, k)
        seed = run.inputs.seed_of(st.step, k)
        st.gen.manual_seed(seed)
        torch.manual_seed(seed)  # dropout and stochastic depth
        x = augment(images, st.gen)
        if tuple(x.shape[-2:]) != size:  # a low-resolution stage (schedule.stages)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        with run.strategy.sync(last=a == accum - 1):
            loss = run.objective.loss(run.net, x, labels, st.gen, seed, run.autocast())
            (loss / accum).backward()
        loss_sum += loss.detach()
    clip = cfg.optim.clip_grad_norm
    params = [p for p in st.trained.parameters() if p.grad is not None]
    gnorm = clip_grad_norm(params, clip) if clip else torch.zeros((), device=d.device)
    stat = torch.stack([loss_sum / accum, gnorm.float(), torch.tensor(float(signalled or 0), device=d.device)])
    stat = dd.all_sum(stat.double(), d).cpu()
    loss_val, gnorm_val = float(stat[0]) / d.world, float(stat[1]) / d.world
    if not (math.isfinite(loss_val) and math.isfinite(gnorm_val)):
        st.optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(
            f"non-finite {'loss' if not math.isfinite(loss_val) else 'gradient norm'} ({loss_val:.4g}, grad norm "
            f"{gnorm_val:.4g}) at step {st.step} (epoch {st.step // plan.steps_per_epoch}); stopped without saving "
            f"this state. Last good checkpoint: {latest_checkpoint(run.run_dir) or 'none yet'}. Lower optim.lr, keep "
            f"optim.clip_grad_norm on, or use train.precision=fp32, then run again to resume from it"
        )
    st.optimizer.step()
    st.optimizer.zero_grad(set_to_none=True)
    if st.ema is not None:
        st.ema.update(st.model)
    st.step += 1
    return loss_val, gnorm_val, (signalled or signal.SIGTERM) if stat[2] > 0 else None


# -- evaluation, checkpoints, final outputs ----------------------------------------------------------------
def _evaluate(run: Run, split: str) -> dict[str, Any]:
    """The objective's summary of ``split`` ("eval": dev, or test without one; "test"), each process scoring its
    share through the input pipeline, preprocessed for the model at its current size."""
    ds, _ = run.inputs.split(split)
    ev = EvalSetup(run.inputs.eval_batches(split, run.model.cfg), len(ds), run.autocast_dtype, run.d,
                   run.cfg.train.seed)
    return run.objective.evaluate(run.eval_model, ev)


def _evaluate_and_save(run: Run, log: RunLogger) -> dict[str, Any] | None:
    """Per-epoch evaluation (and at the last step), then a checkpoint when one is due or the score is best;
    returns the evaluation summary when there was one."""
    r, plan, o, st, data = run.cfg.train, run.plan, run.objective, run.state, run.inputs.data
    end_of_epoch = st.step % plan.steps_per_epoch == 0
    last = st.step == plan.total_steps
    s, best = None, False
    if (end_of_epoch and (st.step // plan.steps_per_epoch) % r.eval_every_epochs == 0) or last:
        s = _evaluate(run, "eval")
        log.info(f"step {st.step} epoch {plan.epoch(st.step):.2f}: {data.eval_name} {o.describe(s)}")
        log.scalars({"step": st.step, "epoch": plan.epoch(st.step), **o.scalars(s, data.eval_name)})
        best = s[o.score] > st.best
        st.best = max(st.best, s[o.score])
    if end_of_epoch or last or best or (r.ckpt_every_steps and st.step % r.ckpt_every_steps == 0):
        run.save(best=best)
    return s


def _finish(run: Run, log: RunLogger, last_eval: tuple[int, dict[str, Any]] | None,
            wall: float) -> dict[str, Any] | None:
    """Test evaluation (reusing the last one when it was on test at this step), then rank 0 writes model/
    (for masked_patch: the encoder alone), final.json, report.md and the plots."""
    from ..models.pretrained import save_pretrained
    from .report import write_outputs

    st, data = run.state, run.inputs.data
    done = last_eval is not None and last_eval[0] == st.step and data.eval_name == "test"
    s = last_eval[1] if done else _evaluate(run, "test")
    model = run.eval_model  # under fsdp a gather: every process takes part
    if not run.d.main:
        return None
    save_pretrained(model, run.run_dir / MODEL_DIR)
    facts = {"steps": st.step, "epochs": run.plan.epoch(st.step), "train_time_s": st.train_time,
             "wall_time_s_this_process": wall, "processes": run.d.world, "device": str(run.d.device),
             "ema": st.ema is not None}
    final = rounded(run.objective.final(s, data.test_name, data.eval_name, st.best, facts))
    write_outputs(run.run_dir, run.cfg, final, run.inputs.classes)
    log.info(f"done: {data.test_name} {run.objective.describe(s)} in {st.train_time / 60:.1f} min of training; "
             f"wrote {run.run_dir}/model, final.json, report.md, plots")
    return final


def _log_train(log: RunLogger, bar, run: Run, window: list, gnorm: float, left: float | None) -> None:
    """The training scalars averaged since the last record (loss, images/s), the lr without layer scaling:
    recorded, and shown in the progress bar or, without one, as a line (``left``: seconds to the end)."""
    st = run.state
    g = st.optimizer.param_groups[0]
    rec = {"step": st.step, "epoch": run.plan.epoch(st.step), "train_loss": window[0] / window[1],
           "lr": g["lr"] / g.get("lr_scale", 1.0), "grad_norm": gnorm, "img_size": st.model.cfg.img_size[0],
           "img_per_s": window[3] * run.cfg.data.batch_size / max(window[2], 1e-9) if window[3] else None}
    log.scalars(rec)
    if bar.disable:
        log.info(train_line(rec, run.plan.total_steps, left))
    else:
        speed = {"img_s": f"{rec['img_per_s']:.0f}"} if rec["img_per_s"] else {}
        bar.set_postfix(loss=f"{rec['train_loss']:.4f}", lr=f"{rec['lr']:.2e}", **speed)


# -- resuming ------------------------------------------------------------------------------------------------
def _resume(run: Run, resume: str | Path | bool | None) -> Path | None:
    """None: continue from RUN/checkpoints when present; a path: from that file; False: fresh only."""
    run_dir = run.run_dir
    if run.d.main:
        remove_partial(run_dir)
    latest = latest_checkpoint(run_dir)
    if resume is False:
        if latest is not None:
            raise ValueError(f"{run_dir} already has checkpoints ({latest.name}); resume it (the default) "
                             "or choose another --out, so nothing saved is overwritten")
        return None
    path = Path(resume) if isinstance(resume, (str, Path)) else latest
    if path is None:
        return None
    saved = run.read_checkpoint(path)
    if run.d.main:
        _warn_changes(run.cfg, saved.get("config", {}), path)
    run.load(saved)
    return path


def _warn_changes(cfg: Config, saved: dict[str, Any], path: Path) -> None:
    try:
        old = config_from_dict(saved).to_dict()
    except (KeyError, ValueError) as e:  # written by another vitlab version
        print(f"note: cannot compare the config saved in {path} with this one ({e})")
        return
    new = cfg.to_dict()
    diff = [f"{s}.{k}: {old[s].get(k)!r} -> {v!r}" for s in new for k, v in new[s].items() if old[s].get(k) != v]
    if diff:
        print(f"note: resuming {path} with a changed config (the result will differ from an uninterrupted run):\n  "
              + "\n  ".join(diff))


def _report_skipped(run: Run, batches: Batches, log: RunLogger, reported: int) -> int:
    """Log and list in RUN/skipped.txt the training files found unreadable since the last report (each was
    replaced by another image); returns how many of this process's are reported now."""
    new = batches.skipped[reported:]
    found = [f for part in dd.all_gather_objects(new, run.d) for f in part]
    if found and run.d.main:
        path = run.run_dir / SKIPPED_FILE
        old = path.read_text() if path.is_file() else ""
        atomic_write(path, lambda tmp: tmp.write_text(old + "".join(f"{p}\t{why}\n" for p, why in found)))
        log.info(f"step {run.state.step}: {len(found)} unreadable training file(s) replaced by other images; "
                 f"listed in {path}")
    return reported + len(new)


def _banner(run: Run, resumed: Path | None) -> str:
    st, c, d, s = run.state, run.cfg, run.d, run.strategy
    n = sum(p.numel() for p in st.model.parameters())
    return (f"{'resuming from ' + str(resumed) + ' at step ' + str(st.step) if resumed else 'training'}: "
            f"{c.model.name or c.model.weights} ({n / 1e6:.2f}M params) on {run.inputs.summary()}, "
            f"{run.plan.total_steps} steps x batch {c.data.batch_size} ({d.world} process(es) x {c.data.accum_steps} "
            f"accumulation x {run.plan.micro}{', ' + s.kind if s.kind != 'none' else ''}), {d.device}, "
            f"{torch.get_num_threads()} threads, {run.precision}{', torch.compile' if s.compile else ''}"
            f"{' (' + s.compile_reason + ')' if s.compile_reason else ''}")


# -- signals -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _stop_signals() -> Iterator[list[int | None]]:
    """SIGINT/SIGTERM set ``signalled[0]`` (the loop stops after the step every process agrees on, saved);
    a second Ctrl-C stops at once. The previous handlers come back on exit."""
    signalled: list[int | None] = [None]
    if threading.current_thread() is not threading.main_thread():
        yield signalled
        return

    def handler(signum, frame):
        if signalled[0] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        signalled[0] = signum

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield signalled
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
