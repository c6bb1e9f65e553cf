"""A sharded checkpoint's index (.metadata, a pickle) is read into DCP's metadata classes only: a real index
reads back, and an index naming any other callable is refused before anything is called, including
callables inside torch that load or run code and dotted paths through the modules DCP's classes live in."""
import io
import json
import pickle
import warnings
from pathlib import Path

import pytest
import torch

from vitlab.errors import CheckpointError
from vitlab.weights.sharded import INDEX, read_sharded, safe_reader
from vitlab.weights.runs import SHARDED_META


def _saved(path: Path, state: dict) -> Path:
    """A DCP checkpoint written by one process, as train.strategy=fsdp writes one (plus vitlab's meta.json)."""
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.distributed is disabled ...": one process, on purpose
        dcp.save(state, checkpoint_id=path, no_dist=True)
    (path / SHARDED_META).write_text(json.dumps({"step": 3}))
    return path


def _short(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b  # SHORT_BINUNICODE


def _calling(module: str, name: str, arg: str) -> bytes:
    """A protocol-4 pickle that looks up module.name (a dotted name is followed attribute by attribute) and
    calls it with `arg`: PROTO 4, STACK_GLOBAL, TUPLE1, REDUCE, STOP."""
    return b"\x80\x04" + _short(module) + _short(name) + b"\x93" + _short(arg) + b"\x85R."


def test_a_real_index_reads_back(tmp_path):
    w = torch.randn(3, 4)
    state = {"model": {"w": w, "b": torch.zeros(2, dtype=torch.bfloat16), "steps": torch.arange(3)},
             "ema": {"module": {"w": w.t().contiguous()}}}
    path = _saved(tmp_path / "step_3.dcp", state)
    assert set(safe_reader(path).read_metadata().state_dict_metadata) == {"model.w", "model.b", "model.steps",
                                                                           "ema.module.w"}
    back = read_sharded(path)
    assert back["step"] == 3 and set(back["model"]) == {"w", "b", "steps"}
    for key, t in state["model"].items():
        assert torch.equal(back["model"][key], t) and back["model"][key].dtype == t.dtype
    assert torch.equal(back["ema"]["module"]["w"], w.t())


@pytest.mark.parametrize("module, name", [
    ("torch", "load"),
    ("torch.serialization", "load"),
    ("torch.jit", "load"),
    ("torch._C", "_load_jit_module_from_file"),
    ("torch.serialization", "pickle.loads"),  # an unrestricted unpickler, re-exported by torch
    ("torch", "serialization.load"),
    ("builtins", "eval"),
    # dotted paths through the module DCP's metadata classes live in (it imports os and torch)
    ("torch.distributed.checkpoint.metadata", "os.mkdir"),
    ("torch.distributed.checkpoint.metadata", "os.system"),
    ("torch.distributed.checkpoint.metadata", "torch.load"),
    ("torch.distributed.checkpoint.metadata", "torch.serialization.os.mkdir"),
    ("torch.distributed.checkpoint.metadata", "Metadata.__init__"),
    ("torch.distributed.checkpoint.filesystem", "os.mkdir"),
])
def test_an_index_naming_another_callable_is_refused_before_it_is_called(tmp_path, module, name):
    path = _saved(tmp_path / "step_3.dcp", {"model": {"w": torch.ones(2)}})
    marker = tmp_path / "ran"  # os.mkdir / os.system("mkdir ...") would create it
    arg = f"mkdir {marker}" if name.endswith("system") else str(marker)
    (path / INDEX).write_bytes(_calling(module, name, arg))
    refused = rf"refused to read .*the index asks for {module}\.{name}.*never runs"
    for read in (lambda: safe_reader(path).read_metadata(), lambda: read_sharded(path)):
        with pytest.raises(CheckpointError, match=refused):
            read()
    assert not marker.exists()


def test_enum_members_pickled_by_getattr_read_and_other_attributes_are_refused(tmp_path):
    """Some Pythons (Debian's 3.11.2) pickle an enum member as getattr(EnumClass, "NAME"): that reads; a getattr
    reaching anything else (a method that would then be called) is refused before it is called."""
    from torch.distributed.checkpoint.metadata import _MEM_FORMAT_ENCODING

    def getattr_pickle(cls_module: str, cls_name: str, attr: str, call_with: tuple = ()) -> bytes:
        body = (pickle.PROTO + bytes([4]) + pickle.GLOBAL + b"builtins\ngetattr\n"
                + pickle.GLOBAL + f"{cls_module}\n{cls_name}\n".encode()
                + pickle.SHORT_BINUNICODE + bytes([len(attr)]) + attr.encode() + pickle.TUPLE2 + pickle.REDUCE)
        if call_with:
            body += pickle.MARK + b"".join(pickle.SHORT_BINUNICODE + bytes([len(a)]) + a.encode()
                                           for a in call_with) + pickle.TUPLE + pickle.REDUCE
        return body + pickle.STOP

    from vitlab.weights.sharded import _IndexUnpickler

    member = getattr_pickle("torch.distributed.checkpoint.metadata", "_MEM_FORMAT_ENCODING", "TORCH_CONTIGUOUS_FORMAT")
    assert _IndexUnpickler(io.BytesIO(member)).load() is _MEM_FORMAT_ENCODING.TORCH_CONTIGUOUS_FORMAT
    marker = tmp_path / "ran"
    path = _saved(tmp_path / "step_3.dcp", {"model": {"w": torch.ones(2)}})
    for attr, args in (("mkdir", (str(marker),)), ("__init__", ())):
        (path / INDEX).write_bytes(getattr_pickle("pathlib", "PosixPath", attr, args))
        with pytest.raises(CheckpointError, match=rf"getattr\(PosixPath, '{attr}'\).*not an enum member"):
            safe_reader(path).read_metadata()
    assert not marker.exists()
