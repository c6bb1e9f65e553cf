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
arithmetic is planned up front (plan.py); data and model come from setup.py; state.py holds what a
checkpoint saves.
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

from ..data.pipeline import Batches, CropSpec, default_workers, train_batches
from ..data.sampler import stream_seed
from ..data.shard_order import ShardSchedule, training_schedule
from ..utils.figures import rounded
from ..utils.io import atomic_write
from ..weights.runs import CONFIG_FILE, MODEL_DIR, SKIPPED_FILE
from . import distributed as dd
from .checkpoint import latest_checkpoint, remove_partial
from .config import Config, config_from_dict
from .objectives import EvalSetup, make_objective
from .optim import set_lr
from .plan import make_plan
from .runlog import Pace, RunLogger, train_line
from .setup import Data, build_run_model, load_data
from .state import TrainState
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
    st, data = _setup(cfg, run_dir, d)
    resumed = _resume(st, run_dir, resume)
    batches = _batches(st, data)
    try:
        return _loop(st, data, batches, resumed, progress)
    finally:
        batches.close()


def _loop(st: TrainState, data: Data, batches: Batches, resumed: Path | None, progress: bool) -> TrainResult:
    cfg, d, run_dir, plan, model, r = st.cfg, st.d, st.run_dir, st.plan, st.model, st.cfg.train
    log = RunLogger(run_dir, st.step, enabled=d.main, tensorboard=True)
    if d.main:
        atomic_write(run_dir / CONFIG_FILE, lambda tmp: tmp.write_text(cfg.to_yaml()))
        for note in data.notes:
            log.info(note)
        log.info(_banner(st, data, resumed))
    t_start, reported = time.perf_counter(), 0  # reported: unreadable files logged so far
    last_eval: tuple[int, dict[str, Any]] | None = None  # (step, summary) of the latest evaluation
    # loss sum, steps, then the seconds in train_step and their steps (eval, saving and compiling excluded)
    window = [0.0, 0, 0.0, 0]
    pace = Pace()
    compiling = st.compile  # the next step compiles: the first one, and the first after a stage's resize
    with _stop_signals() as signalled, log, log.progress(plan.total_steps, st.step, progress) as bar:
        while st.step < plan.total_steps:
            if plan.size_at(st.step) != tuple(model.cfg.img_size):
                st.resize(plan.size_at(st.step))
                log.info(f"step {st.step}: training at {model.cfg.img_size[0]}x{model.cfg.img_size[1]}")
                compiling = st.compile
            loss, gnorm, stop, dt = _timed_step(st, log, compiling, batches, signalled[0])
            timed = not compiling  # a compiling step's seconds say nothing of the speed
            compiling = False
            pace.stepped(st.step)
            st.train_time += dt
            window = [window[0] + loss, window[1] + 1, window[2] + dt * timed, window[3] + timed]
            bar.update(1)
            if st.step % r.log_every_steps == 0 or st.step == plan.total_steps:
                _log_train(log, bar, st, window, gnorm, pace.left(st.step, plan.total_steps))
                window = [0.0, 0, 0.0, 0]
                reported = _report_skipped(st, batches, log, reported)
            if (s := _evaluate_and_save(st, data, log)) is not None:
                last_eval = (st.step, s)
            if stop is not None:  # every process saw the signal at the same step
                _report_skipped(st, batches, log, reported)
                path = st.save() if st.last_saved != st.step else latest_checkpoint(run_dir)
                return TrainResult(run_dir, st.step, plan.total_steps, stop, path)
        if st.last_saved != st.step:
            st.save()
        _report_skipped(st, batches, log, reported)
        if tuple(model.cfg.img_size) != tuple(plan.sizes[0][1]):
            last_eval = None  # made at a stage's size: final.json must report the model at its own size
        st.resize(plan.sizes[0][1])  # the final evaluation and the saved model use the model's own size
        final = _finish(st, data, log, last_eval, time.perf_counter() - t_start)
        return TrainResult(run_dir, st.step, plan.total_steps, None, latest_checkpoint(run_dir), final)


def _setup(cfg: Config, run_dir: Path, d: dd.Dist) -> tuple[TrainState, Data]:
    """Data, model (seeded by train.seed), objective, step plan, optimizer: everything before step 0."""
    r = cfg.train
    torch.set_num_threads(r.threads or max(1, (os.cpu_count() or 1) // d.local_world))
    torch.manual_seed(r.seed)  # model initialisation
    data = load_data(cfg, run_dir, write=d.main)
    model = build_run_model(cfg, data).to(d.device)
    model.set_grad_checkpointing(r.grad_checkpointing)
    plan = make_plan(cfg, len(data.train), d.world, tuple(model.cfg.img_size),
                     lambda size: model.patch_embed.grid_size(size))
    return TrainState(cfg, model, make_objective(cfg, data.classes), plan, d, run_dir,
                      cropped=not data.train.in_memory), data


def _batches(st: TrainState, data: Data) -> Batches:
    """The training images' provider, from the current step on (a resumed run reads no skipped sample)."""
    c, d, plan = st.cfg, st.d, st.plan
    schedule = training_schedule(c.data.shard_order, data.train, c.train.seed, plan.steps_per_epoch, plan.total_steps,
                                 c.data.batch_size, plan.micro, c.data.accum_steps, d.world, d.rank, _workers(c, d),
                                 c.data.shuffle_buffer)
    if isinstance(schedule, ShardSchedule):
        data.notes.append(schedule.describe())
    spec = CropSpec(st.train_tf.img_size, c.data.crop_scale, c.data.crop_ratio, c.data.flip)
    return train_batches(data.train, schedule, st.step, spec, c.train.seed, c.data.on_error, _workers(c, d), d.device)


def _workers(cfg: Config, d: dd.Dist) -> int:
    return cfg.data.workers if cfg.data.workers is not None else default_workers(d.local_world)


def _timed_step(st: TrainState, log: RunLogger, compiling: bool,
                *step_args: Any) -> tuple[float, float, int | None, float]:
    """A step (``_step_or_eager``) and its seconds; a step that compiles is announced before and timed after."""
    if compiling:
        log.info(f"step {st.step}: compiling the model (torch.compile)...")
    t0 = time.perf_counter()
    loss, gnorm, stop = _step_or_eager(st, log, *step_args)
    dt = time.perf_counter() - t0
    if compiling and st.compile:  # (when compiling failed, _step_or_eager said so)
        log.info(f"step {st.step}: compiled in {dt:.1f} s")
    return loss, gnorm, stop, dt


def _step_or_eager(st: TrainState, log: RunLogger, *step_args: Any) -> tuple[float, float, int | None]:
    """train_step; under train.compile=auto a step whose compiling fails (no usable C++ toolchain, say) runs
    again eagerly, and the run goes on without compiling. An explicit train.compile=true keeps the error."""
    try:
        return train_step(st, *step_args)
    except torch._dynamo.exc.BackendCompilerFailed as e:
        if not (st.compile and st.cfg.train.compile == "auto"):
            raise
        st.optimizer.zero_grad(set_to_none=True)  # the failed step applied nothing; drop what it accumulated
        st.stop_compiling(f"auto: compiling failed ({type(e).__name__})")
        log.info(f"step {st.step}: torch.compile failed ({str(e).strip().splitlines()[0][:160]}); training eagerly "
                 "from here (train.compile=false skips compiling)")
        return train_step(st, *step_args)


def train_step(st: TrainState, batches: Batches, signalled: int | None) -> tuple[float, float, int | None]:
    """One optimizer step. Returns the mean loss and gradient norm over processes, and the signal to stop
    on when any process was signalled (so that all stop after the same step)."""
    cfg, d, plan = st.cfg, st.d, st.plan
    accum = cfg.data.accum_steps
    set_lr(st.optimizer, plan.lr_at(st.step))
    size = tuple(st.model.cfg.img_size)
    loss_sum = torch.zeros((), device=d.device)
    for a in range(accum):
        k = a * d.world + d.rank  # this micro-batch's index in the global batch
        images, labels = batches.get(st.step, k)
        seed = stream_seed(cfg.train.seed, st.step, k)
        st.gen.manual_seed(seed)
        torch.manual_seed(seed)  # dropout and stochastic depth
        x = st.train_tf(images, st.gen)
        if tuple(x.shape[-2:]) != size:  # a low-resolution stage (schedule.stages)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        with st.strategy.sync(last=a == accum - 1):
            loss = st.objective.loss(st.net, x, labels, st.gen, seed, st.autocast())
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
            f"this state. Last good checkpoint: {latest_checkpoint(st.run_dir) or 'none yet'}. Lower optim.lr, keep "
            f"optim.clip_grad_norm on, or use train.precision=fp32, then run again to resume from it"
        )
    st.optimizer.step()
    st.optimizer.zero_grad(set_to_none=True)
    if st.ema is not None:
        st.ema.update(st.model)
    st.step += 1
    return loss_val, gnorm_val, (signalled or signal.SIGTERM) if stat[2] > 0 else None


# -- evaluation, checkpoints, final outputs ----------------------------------------------------------------
def _evaluate(st: TrainState, ds) -> dict[str, Any]:
    c = st.cfg
    ev = EvalSetup(st.eval_transform(), c.data.eval_batch_size, st.autocast_dtype, st.d, c.train.seed,
                   _workers(c, st.d))
    return st.objective.evaluate(st.eval_model, ds, ev)


def _evaluate_and_save(st: TrainState, data: Data, log: RunLogger) -> dict[str, Any] | None:
    """Per-epoch evaluation (and at the last step), then a checkpoint when one is due or the score is best;
    returns the evaluation summary when there was one."""
    r, plan, o = st.cfg.train, st.plan, st.objective
    end_of_epoch = st.step % plan.steps_per_epoch == 0
    last = st.step == plan.total_steps
    s, best = None, False
    if (end_of_epoch and (st.step // plan.steps_per_epoch) % r.eval_every_epochs == 0) or last:
        s = _evaluate(st, data.eval_set)
        log.info(f"step {st.step} epoch {plan.epoch(st.step):.2f}: {data.eval_name} {o.describe(s)}")
        log.scalars({"step": st.step, "epoch": plan.epoch(st.step), **o.scalars(s, data.eval_name)})
        best = s[o.score] > st.best
        st.best = max(st.best, s[o.score])
    if end_of_epoch or last or best or (r.ckpt_every_steps and st.step % r.ckpt_every_steps == 0):
        st.save(best=best)
    return s




def _finish(st: TrainState, data: Data, log: RunLogger, last_eval: tuple[int, dict[str, Any]] | None,
            wall: float) -> dict[str, Any] | None:
    """Test evaluation (reusing the last one when it was on test at this step), then rank 0 writes model/
    (for masked_patch: the encoder alone), final.json, report.md and the plots."""
    from ..models.pretrained import save_pretrained
    from .report import write_outputs

    done = last_eval is not None and last_eval[0] == st.step and data.eval_name == "test"
    s = last_eval[1] if done else _evaluate(st, data.test)
    model = st.eval_model  # under fsdp a gather: every process takes part
    if not st.d.main:
        return None
    save_pretrained(model, st.run_dir / MODEL_DIR)
    run = {"steps": st.step, "epochs": st.plan.epoch(st.step), "train_time_s": st.train_time,
           "wall_time_s_this_process": wall, "processes": st.d.world, "device": str(st.d.device),
           "ema": st.ema is not None}
    final = rounded(st.objective.final(s, data.test_name, data.eval_name, st.best, run))
    write_outputs(st.run_dir, st.cfg, final, data.classes)
    log.info(f"done: {data.test_name} {st.objective.describe(s)} in {st.train_time / 60:.1f} min of training; wrote "
             f"{st.run_dir}/model, final.json, report.md, plots")
    return final


def _log_train(log: RunLogger, bar, st: TrainState, window: list, gnorm: float, left: float | None) -> None:
    """The training scalars averaged since the last record (loss, images/s), the lr without layer scaling:
    recorded, and shown in the progress bar or, without one, as a line (``left``: seconds to the end)."""
    g = st.optimizer.param_groups[0]
    rec = {"step": st.step, "epoch": st.plan.epoch(st.step), "train_loss": window[0] / window[1],
           "lr": g["lr"] / g.get("lr_scale", 1.0), "grad_norm": gnorm, "img_size": st.model.cfg.img_size[0],
           "img_per_s": window[3] * st.cfg.data.batch_size / max(window[2], 1e-9) if window[3] else None}
    log.scalars(rec)
    if bar.disable:
        log.info(train_line(rec, st.plan.total_steps, left))
    else:
        speed = {"img_s": f"{rec['img_per_s']:.0f}"} if rec["img_per_s"] else {}
        bar.set_postfix(loss=f"{rec['train_loss']:.4f}", lr=f"{rec['lr']:.2e}", **speed)


# -- resuming ------------------------------------------------------------------------------------------------
def _resume(st: TrainState, run_dir: Path, resume: str | Path | bool | None) -> Path | None:
    """None: continue from RUN/checkpoints when present; a path: from that file; False: fresh only."""
    if st.d.main:
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
    saved = st.read_checkpoint(path)
    if st.d.main:
        _warn_changes(st.cfg, saved.get("config", {}), path)
    st.load_state_dict(saved)
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


def _report_skipped(st: TrainState, batches: Batches, log: RunLogger, reported: int) -> int:
    """Log and list in RUN/skipped.txt the training files found unreadable since the last report (each was
    replaced by another image); returns how many of this process's are reported now."""
    new = batches.skipped[reported:]
    found = [f for part in dd.all_gather_objects(new, st.d) for f in part]
    if found and st.d.main:
        path = st.run_dir / SKIPPED_FILE
        old = path.read_text() if path.is_file() else ""
        atomic_write(path, lambda tmp: tmp.write_text(old + "".join(f"{p}\t{why}\n" for p, why in found)))
        log.info(f"step {st.step}: {len(found)} unreadable training file(s) replaced by other images; listed in {path}")
    return reported + len(new)


def _banner(st: TrainState, data: Data, resumed: Path | None) -> str:
    n = sum(p.numel() for p in st.model.parameters())
    c, d = st.cfg, st.d
    w = _workers(c, d)
    how = "in memory" if data.train.in_memory else f"read from disk by {w} worker process(es)" if w else \
        "read from disk in this process (data.workers=0)"
    return (f"{'resuming from ' + str(resumed) + ' at step ' + str(st.step) if resumed else 'training'}: "
            f"{c.model.name or c.model.weights} ({n / 1e6:.2f}M params) on {c.data.dataset} "
            f"({len(data.train)} train / {len(data.eval_set)} "
            f"{data.test_name if data.eval_name == 'test' else data.eval_name}; {how}), {st.plan.total_steps} steps "
            f"x batch {c.data.batch_size} ({d.world} process(es) x {c.data.accum_steps} accumulation x "
            f"{st.plan.micro}{', ' + st.strategy.kind if st.strategy.kind != 'none' else ''}), {d.device}, "
            f"{torch.get_num_threads()} threads, {st.precision}"
            f"{', torch.compile' if st.compile else ''}"
            f"{' (' + st.compile_reason + ')' if st.compile_reason else ''}")


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
