"""Reading a sharded training checkpoint (``RUN/checkpoints/step_N.dcp/``) without a process group.

``train.strategy=fsdp`` saves with ``torch.distributed.checkpoint`` (DCP): each process writes its own
shard files (``__<rank>_0.distcp``), rank 0 writes the index (``.metadata``) and ``meta.json`` holds
everything that is not a tensor (step, recipe, image size, optimizer hyper-parameters). DCP reassembles
whole tensors from the shards on load, so one process reads a checkpoint any number wrote. Its format
is not guaranteed across PyTorch versions: ``vitlab convert`` turns one into a safetensors file.

DCP's own reader unpickles the index with plain ``pickle`` (and non-tensor entries with
``torch.load(weights_only=False)``): a crafted checkpoint would run code. ``safe_reader`` unpickles the
index into DCP's metadata classes only, refuses non-tensor entries (vitlab writes none: they are in
meta.json), and the tensors themselves are read by DCP with ``weights_only=True``.
"""
from __future__ import annotations

import enum
import functools
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .runs import SHARDED_META

INDEX = ".metadata"  # DCP's index file: which tensor chunks are in which shard file
_METADATA = "torch.distributed.checkpoint.metadata"
# Everything a DCP index names (recorded from the saves of torch 2.13 and 2.14), by exact module and attribute:
# DCP's metadata classes and enum, its storage record, torch.Size, the layout lookup, paths, and torch's dtypes.
# A whole module is never allowed: an index may name a dotted path (pickle protocol 4), and DCP's modules hold
# `os` and `torch`, so "os.system" or "torch.load" looked up inside an allowed module would run code.
_INDEX_GLOBALS = {(_METADATA, n) for n in ("Metadata", "MetadataIndex", "StorageMeta", "ChunkStorageMetadata",
                                           "TensorProperties", "TensorStorageMetadata", "BytesStorageMetadata",
                                           "_MEM_FORMAT_ENCODING")} | {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
    ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath")}


def _enum_member(cls: Any, name: str) -> enum.Enum:
    """``getattr`` as some Python versions pickle an enum member (``getattr(EnumClass, "NAME")``; Debian's
    3.11.2 does, 3.11.7 does not): only a member of an enum the index may name, never another attribute."""
    if isinstance(cls, type) and issubclass(cls, enum.Enum) and isinstance(name, str) and name in cls.__members__:
        return cls[name]
    raise pickle.UnpicklingError(f"the index asks for getattr({getattr(cls, '__name__', type(cls).__name__)}, "
                                 f"{name!r}), which is not an enum member")


class _IndexUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        dtype = module == "torch" and "." not in name and isinstance(getattr(torch, name, None), torch.dtype)
        if (module, name) in _INDEX_GLOBALS or dtype:
            return super().find_class(module, name)
        if (module, name) == ("builtins", "getattr"):
            return _enum_member
        raise pickle.UnpicklingError(f"the index asks for {module}.{name}")


def safe_reader(path: str | os.PathLike) -> Any:
    """A DCP storage reader for ``path`` whose index can only hold DCP's metadata (see the module docstring)."""
    return _safe_reader_class()(path)


@functools.cache
def _safe_reader_class() -> type:
    """Defined on first use: torch.distributed.checkpoint takes ~0.7 s to import, too long for every command."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, Metadata, StorageMeta

    class SafeReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
            index = Path(self.path) / INDEX
            try:
                with open(index, "rb") as f:
                    metadata = _IndexUnpickler(f).load()
            except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError) as e:
                raise CheckpointError(f"refused to read {index}: not a plain torch.distributed.checkpoint index "
                                      f"({e}); vitlab never runs code from a checkpoint") from None
            if not isinstance(metadata, Metadata):
                raise CheckpointError(f"refused to read {index}: it holds a {type(metadata).__name__}, not DCP "
                                      "metadata")
            pickled = [k for k, m in metadata.state_dict_metadata.items() if isinstance(m, BytesStorageMetadata)]
            if pickled:
                raise CheckpointError(f"refused to read {index.parent}: entries {pickled[:3]} are pickled objects, "
                                      "which vitlab never writes into a checkpoint (nor loads)")
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReader


def check_shards(path: str | os.PathLike) -> None:
    """Raise naming the first file the checkpoint's index lists but the directory lacks (a shard lost in a
    copy, or a save killed before every process finished), before anything is loaded from it."""
    path = Path(path)
    if not (path / INDEX).is_file():
        raise CheckpointError(f"{path} has no {INDEX} index: not a complete torch.distributed.checkpoint "
                              "directory (was the save killed? resume from the previous step checkpoint)")
    files = sorted({info.relative_path for info in safe_reader(path).read_metadata().storage_data.values()})
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
    from torch.distributed.checkpoint import load

    path = Path(path)
    meta = read_meta(path)
    check_shards(path)
    reader = safe_reader(path)
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
