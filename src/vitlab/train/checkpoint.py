"""Training checkpoints that lose nothing: written atomically, last-k plus best kept.

A checkpoint is one ``torch.save`` dict (model, optimizer, EMA, RNG states, step, data position,
config). It is written to a temporary file, fsync'ed, then renamed over the final name, and the
directory is fsync'ed, so a crash or SIGKILL at any moment leaves either the old or the new file,
never a torn one. Files are read back with ``weights_only=True`` (plain tensors and containers).
The file names are ``vitlab.weights.runs``' (the loaders read them too).

Under ``train.strategy=fsdp`` a checkpoint is a directory, ``step_<step>.dcp``: every process writes its
shards of the tensors (model, optimizer, EMA, RNG) with ``torch.distributed.checkpoint`` (DCP) into a
hidden temporary directory, rank 0 adds ``meta.json`` (everything that is not a tensor), and only then is
the directory renamed to its final name: a save killed midway leaves a ``.step_*.tmp`` directory (removed
at the next start) and the previous checkpoint intact. DCP reshards on load, so a run can resume on
another number of processes. Processes share the run directory (one machine, or a shared filesystem).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from ..utils.io import atomic_write, fsync_dir
from ..weights.runs import (BEST, BEST_SHARDED, CKPT_DIR, SHARDED_META, latest_checkpoint,  # noqa: F401 (re-exported)
                            step_checkpoints, step_name)
from ..weights.runs import is_sharded_checkpoint
from ..weights.sharded import check_shards, read_meta, safe_reader
from .distributed import Dist, barrier


def save(state: dict[str, Any], run_dir: Path, keep_last: int, best: bool, d: Dist, sharded: bool) -> Path | None:
    """A training checkpoint in the run's format, every process waiting for it: under fsdp (``sharded``) every
    process writes its shards of ``step_N.dcp/`` (and best.dcp/), otherwise rank 0 writes ``step_N.pt`` (and
    best.pt). Returns the path (None on the processes that wrote nothing)."""
    path = None
    if sharded:
        path = save_sharded(state, run_dir, keep_last, best, d)
    elif d.main:
        path = save_checkpoint(state, run_dir, keep_last, best=best)
    barrier(d)
    return path


def load(path: Path, device: torch.device, sharded: bool, strategy: str,
         like: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """A saved training state in the format the run uses: a ``.pt`` file read whole, or (``sharded``, every
    process) a ``.dcp`` directory read into the tensors of ``like(meta)``: this run's state dict, sharded as the
    run is, made for the checkpoint's meta.json (its image size). ``strategy``: how the run trains, in words
    ("train.strategy=auto here (none)"), named when the checkpoint was saved under the other format."""
    saved_sharded = is_sharded_checkpoint(path)
    if saved_sharded != sharded:
        made = "fsdp" if saved_sharded else "ddp (or one process)"
        raise ValueError(f"{path} was saved under train.strategy={made} and cannot resume under {strategy}: "
                         f"resume with train.strategy={'fsdp' if saved_sharded else 'ddp'}, or start a new run (--out "
                         f"elsewhere) from its weights: model.weights={path}")
    if sharded:
        return load_sharded(path, like(read_meta(path)))
    return load_checkpoint(path, map_location=device)


def save_checkpoint(state: dict[str, Any], run_dir: Path, keep_last: int, best: bool = False) -> Path:
    """Write ``checkpoints/step_<step>.pt``, optionally mark it best, and prune to the last ``keep_last``."""
    d = Path(run_dir) / CKPT_DIR
    path = atomic_write(d / step_name(state["step"], sharded=False), lambda tmp: torch.save(state, tmp))
    if best:
        tmp = d / f".{BEST}.tmp{os.getpid()}"
        if tmp.exists():
            tmp.unlink()
        os.link(path, tmp)  # same bytes, no second serialisation; survives pruning of step files
        os.replace(tmp, d / BEST)
        fsync_dir(d)
    _prune(run_dir, keep_last)
    return path


def save_sharded(state: dict[str, Any], run_dir: Path, keep_last: int, best: bool, d: Dist) -> Path:
    """Every process: write ``checkpoints/step_<step>.dcp`` (see the module docstring), optionally copy it to
    best.dcp (hard links), and prune to the last ``keep_last``. Returns the directory."""
    from torch.distributed.checkpoint import save

    ckpts = Path(run_dir) / CKPT_DIR
    final = ckpts / step_name(state["step"], sharded=True)
    tmp = ckpts / f".{final.name}.tmp"  # one name for all processes: they write into the same directory
    tensors, rest = _split(state)
    if d.main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    barrier(d)
    save(tensors, checkpoint_id=tmp)  # returns on every process once all shards and the index are written
    if d.main:
        atomic_write(tmp / SHARDED_META, lambda f: f.write_text(json.dumps(rest, indent=1) + "\n"))
        _replace_dir(tmp, final)
        if best:
            copy = ckpts / f".{BEST_SHARDED}.tmp"
            if copy.exists():
                shutil.rmtree(copy)
            shutil.copytree(final, copy, copy_function=os.link)  # same bytes; survives pruning of step dirs
            _replace_dir(copy, ckpts / BEST_SHARDED)
        _prune(run_dir, keep_last)
    barrier(d)
    return final


def load_sharded(path: Path, like: dict[str, Any]) -> dict[str, Any]:
    """Every process: read a ``.dcp`` checkpoint into the tensors of ``like`` (this run's state dict, sharded
    as this run is: DCP reshards from however many processes wrote it) and return it with meta.json merged
    in, shaped as ``Run.checkpoint_state``. A missing shard file is named before anything is read."""
    from torch.distributed.checkpoint import load

    path = Path(path)
    check_shards(path)
    meta = read_meta(path)
    tensors, _ = _split(like)
    load(tensors, storage_reader=safe_reader(path))
    return _merge(tensors, meta)


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename directory ``src`` to ``dst``, replacing an existing ``dst`` (moved aside first, then deleted)."""
    old = dst.with_name(f".{dst.name}.old.tmp")
    if dst.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(dst, old)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    if old.exists():
        shutil.rmtree(old)


def _prune(run_dir: Path, keep_last: int) -> None:
    for old in step_checkpoints(run_dir)[:-keep_last]:
        _remove(old)


_ABSENT = object()


def _split(obj: Any) -> tuple[Any, Any]:
    """(tensors, rest) of a nested dict: its tensors (for DCP) and everything else (for JSON), each in the
    same nesting; ``_ABSENT`` for a side with nothing."""
    if isinstance(obj, torch.Tensor):
        return obj, _ABSENT
    if not isinstance(obj, dict):
        return _ABSENT, obj
    tensors, rest = {}, {}
    for k, v in obj.items():
        t, r = _split(v)
        if t is not _ABSENT:
            tensors[k] = t
        if r is not _ABSENT:
            rest[k] = r
    return (tensors if tensors else _ABSENT), (rest if rest or not tensors else _ABSENT)


def _merge(tensors: dict[str, Any], rest: dict[str, Any]) -> dict[str, Any]:
    out = dict(rest)
    for k, v in tensors.items():
        out[k] = _merge(v, out.get(k) or {}) if isinstance(v, dict) else v
    return out


def remove_partial(run_dir: Path) -> list[Path]:
    """Delete temporary files and directories a killed writer left behind (never a finished checkpoint)."""
    d = Path(run_dir) / CKPT_DIR
    stale = list(d.glob(".*.tmp*")) if d.is_dir() else []
    for p in stale:
        _remove(p)
    return stale


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    else:
        p.unlink()


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a foreign or damaged file: say what it is, not a pickle traceback
        raise ValueError(f"{path} is not a readable vitlab training checkpoint ({type(e).__name__}: {e})") from None
