"""Reading a sharded training checkpoint (``RUN/checkpoints/step_N.dcp/``) without a process group.

``train.strategy=fsdp`` saves with ``torch.distributed.checkpoint`` (DCP): each process writes its own
shard files (``__<rank>_0.distcp``), rank 0 writes the index (``.metadata``) and ``meta.json`` holds
everything that is not a tensor (step, recipe, image size, optimizer hyper-parameters). DCP reassembles
whole tensors from the shards on load, so one process reads a checkpoint any number wrote. Its format
is not guaranteed across PyTorch versions: ``vitlab convert`` turns one into a safetensors file.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .runs import SHARDED_META


def check_shards(path: str | os.PathLike) -> None:
    """Raise naming the first file the checkpoint's index lists but the directory lacks (a shard lost in a
    copy, or a save killed before every process finished), before anything is loaded from it."""
    from torch.distributed.checkpoint import FileSystemReader

    path = Path(path)
    if not (path / ".metadata").is_file():
        raise CheckpointError(f"{path} has no .metadata index: not a complete torch.distributed.checkpoint "
                              "directory (was the save killed? resume from the previous step checkpoint)")
    files = sorted({info.relative_path for info in FileSystemReader(path).read_metadata().storage_data.values()})
    for name in files:
        if not (path / name).is_file():
            raise CheckpointError(f"{path} is incomplete: shard file {name} is missing ({len(files)} expected: "
                                  f"{', '.join(files)}); copy the whole directory, or use an earlier checkpoint")


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The non-tensor part of a sharded checkpoint (step, config, img_size, ...)."""
    f = Path(path) / SHARDED_META
    if not f.is_file():
        raise CheckpointError(f"{path} has no {SHARDED_META}: not a vitlab sharded checkpoint")
    return json.loads(f.read_text())


def read_sharded(path: str | os.PathLike, prefixes: tuple[str, ...] = ("model.", "ema.module.")) -> dict[str, Any]:
    """Whole tensors of the entries under ``prefixes`` (DCP's flattened keys, e.g. ``model.blocks.0...``),
    nested back under their first key, plus meta.json: a dict shaped like a ``.pt`` training checkpoint."""
    from torch.distributed.checkpoint import FileSystemReader, load

    path = Path(path)
    meta = read_meta(path)
    check_shards(path)
    reader = FileSystemReader(path)
    saved = reader.read_metadata().state_dict_metadata
    flat = {k: torch.empty(m.size, dtype=m.properties.dtype) for k, m in saved.items()
            if k.startswith(prefixes) and hasattr(m, "size")}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        load(flat, storage_reader=reader, no_dist=True)
    out: dict[str, Any] = dict(meta)
    for key, t in flat.items():
        prefix = next(p for p in prefixes if key.startswith(p))
        node = out
        for part in prefix.rstrip(".").split("."):
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[key[len(prefix):]] = t
    return out
