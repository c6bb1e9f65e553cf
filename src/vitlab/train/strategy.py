"""How the trained module runs over processes (``train.strategy``) and whether its step is compiled.

- ``none`` (one process, ddp or auto): the module as it is.
- ``ddp``: every process holds the whole model, its gradients and optimizer state; DistributedDataParallel
  averages the gradients (all-reduce) after the last micro-batch of a step.
- ``fsdp``: FSDP2 ``fully_shard`` on every transformer block, then on the root. Each process keeps 1/world
  of the parameters, gradients and optimizer state (fp32 AdamW: 16 bytes a parameter / world); a block's
  weights are all-gathered just before its forward and backward and freed after, gradients are
  reduce-scattered (averaged). The position embeddings are left out of the sharding (``REPLICATED``: every
  process keeps them whole, their gradients are all-reduced here), so that a stage can resample them to
  another grid mid-run as under ddp. Under ``train.objective=masked_patch`` every parameter outside the
  blocks stays whole (the [mask] embedding and colour head with the encoder's own): its evaluation calls
  the pretext module on each process's share of the images, however many, which must then need no
  collective. On CUDA with bf16 a mixed-precision policy computes in bf16 over fp32
  master weights and reduces gradients in fp32. On CPU the mesh is given explicitly as a CPU mesh (gloo),
  so a machine with GPUs never tries CUDA for it. FSDP runs at any process count, one included: its step
  checkpoints are torch.distributed.checkpoint directories (train/checkpoint.py); evaluation and
  RUN/model use a gathered whole copy of the weights (``gathered``).
- ``auto``: ddp, unless several CUDA processes train a model whose fp32 training state (16 bytes a
  parameter) would take more than half of one GPU's memory; then fsdp, which divides it by their number.
"""
from __future__ import annotations

import contextlib
import copy
import os
import shutil
from typing import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .config import Config
from .distributed import Dist

STATE_BYTES_PER_PARAM = 16  # fp32 weight + gradient + AdamW's two moments
REPLICATED = ("pos_embed", "pos_embed_row", "pos_embed_col")  # kept whole under fsdp: resampled at a stage


def resolve(setting: str, d: Dist, n_params: int) -> str:
    """``none``, ``ddp`` or ``fsdp`` for ``train.strategy`` on these processes (see the module docstring)."""
    if setting == "auto" and d.device.type == "cuda" and d.world > 1:
        total = torch.cuda.get_device_properties(d.device).total_memory
        setting = "fsdp" if n_params * STATE_BYTES_PER_PARAM > total / 2 else "ddp"
    if setting == "fsdp":
        return "fsdp"
    return "ddp" if d.world > 1 else "none"


class Strategy:
    """Shards (fsdp), wraps (ddp) and compiles the trained module; says how a micro-batch synchronises."""

    def __init__(self, cfg: Config, d: Dist, n_params: int, bf16: bool) -> None:
        self.d = d
        self.kind = resolve(cfg.train.strategy, d, n_params)
        self.compile, self.compile_reason = use_compile(cfg.train.compile, d.device)
        self._root: nn.Module | None = None  # the DDP or FSDP module that synchronises gradients
        self._last = True  # whether the running micro-batch is the step's last (gradients are averaged then)
        self._hooks: list = []  # the averaging hooks on the replicated parameters (fsdp)
        self._templates: dict[int, nn.Module] = {}  # id(a sharded module or a submodule) -> its layout on "meta"
        self.whole_root = cfg.train.objective == "masked_patch"  # replicate every parameter outside the blocks
        # The fused CPU optimizer kernel rounds the SIMD body and the scalar tail of a tensor differently, so
        # an element's update would depend on where the shard boundary puts it (1-ulp differences that Adam
        # amplifies in near-zero gradients such as the key biases'). The foreach kernels round every element
        # alike: a sharded CPU run then computes what one process computes, bit for bit.
        self.fused_optimizer = not (self.kind == "fsdp" and d.device.type == "cpu")
        if self.kind != "fsdp":
            return
        if not dist.is_initialized():  # one process: a group of one, so that sharding and DCP work the same
            dist.init_process_group("nccl" if d.device.type == "cuda" else "gloo", store=dist.HashStore(),
                                    rank=0, world_size=1)
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy

        self.mesh = init_device_mesh(d.device.type, (d.world,))
        on_gpu_bf16 = bf16 and d.device.type == "cuda"
        self.mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if on_gpu_bf16 \
            else MixedPrecisionPolicy()

    @property
    def sharded(self) -> bool:
        return self.kind == "fsdp"

    def shard(self, module: nn.Module) -> None:
        """fsdp: ``fully_shard`` each transformer block of ``module`` (``module.blocks``, or its encoder's),
        then ``module`` itself, in place. Other strategies: nothing."""
        if not self.sharded:
            return
        from torch.distributed.fsdp import fully_shard

        on_meta = {id(t): nn.Parameter(t.to("meta"), t.requires_grad) if isinstance(t, nn.Parameter) else t.to("meta")
                   for t in [*module.parameters(), *module.buffers()]}
        template = copy.deepcopy(module, on_meta)  # the layout without a copy of the weights
        self._templates.update({id(m): t for m, t in zip(module.modules(), template.modules())})
        for m in list(module.modules()):
            if isinstance(getattr(m, "blocks", None), nn.ModuleList):
                for blk in m.blocks:
                    fully_shard(blk, mesh=self.mesh, mp_policy=self.mp)
        fully_shard(module, mesh=self.mesh, mp_policy=self.mp, ignored_params=set(self.replicated(module)))

    def wrap(self, trained: nn.Module) -> nn.Module:
        """The module a step calls: ``trained`` (sharded already under fsdp), inside DDP under ddp, compiled
        when train.compile says so."""
        net = trained
        if self.kind == "ddp":
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(trained, device_ids=[self.d.device] if self.d.device.type == "cuda" else None)
        self._root = net if self.kind != "none" else None
        if self.sharded:  # again after a stage resampled them: they are new parameters
            for h in self._hooks:
                h.remove()
            self._hooks = [p.register_post_accumulate_grad_hook(self._average) for p in self.replicated(trained)]
        return torch.compile(net) if self.compile else net

    def replicated(self, module: nn.Module) -> list[nn.Parameter]:
        """The parameters of ``module`` that fsdp keeps whole on every process: ``REPLICATED`` at any depth,
        and with ``whole_root`` every one outside the blocks."""
        def whole(name: str) -> bool:
            return name.rpartition(".")[2] in REPLICATED or (self.whole_root and "blocks." not in name)

        return [p for name, p in module.named_parameters() if whole(name)]

    def _average(self, p: nn.Parameter) -> None:
        """The gradient of a replicated parameter, averaged over processes after the step's last micro-batch
        (what DDP does; FSDP leaves these to us)."""
        if self._last and self.d.world > 1:
            dist.all_reduce(p.grad)
            p.grad.div_(self.d.world)

    def stop_compiling(self, reason: str) -> None:
        self.compile, self.compile_reason = False, reason

    def sync(self, last: bool) -> contextlib.AbstractContextManager:
        """Around one micro-batch's forward and backward: gradients are averaged over processes after the
        step's last micro-batch only (accumulated locally before)."""
        self._last = last
        if self.kind == "ddp" and not last:
            return self._root.no_sync()
        if self.kind == "fsdp":
            self._root.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def gathered(self, module: nn.Module) -> nn.Module:
        """``module`` itself, or under fsdp a whole (unsharded) copy of its current weights in eval mode on
        every process: what evaluation runs (each process evaluates its share of the images, whatever
        their number) and RUN/model saves. Every process must call it (an all-gather)."""
        if not self.sharded:
            return module
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True))
        replica = copy.deepcopy(self._templates[id(module)]).to_empty(device=self.d.device)
        if hasattr(replica, "set_input_size") and replica.cfg.img_size != module.cfg.img_size:
            replica.set_input_size(module.cfg.img_size)  # a stage's size: position embeddings of its grid
        replica.load_state_dict(full)
        return replica.eval().requires_grad_(False)


def clip_grad_norm(params: Iterable[nn.Parameter], max_norm: float) -> Tensor:
    """Scale the gradients to global L2 norm <= ``max_norm``; returns the norm before clipping. Under fsdp
    most gradients are shards (DTensors): their norm is over all processes' shards (the norm one process
    with the whole model computes), not over this process's shard; the replicated ones join it whole."""
    from torch.distributed.tensor import DTensor

    params = list(params)
    groups = [g for g in ([p for p in params if isinstance(p.grad, DTensor)],
                          [p for p in params if not isinstance(p.grad, DTensor)]) if g]  # foreach: one kind each
    norms = []
    for g in groups:
        n = torch.nn.utils.get_total_norm([p.grad for p in g], foreach=True)
        norms.append(n.full_tensor() if isinstance(n, DTensor) else n)
    if not norms:
        return torch.zeros(())
    total = norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms))
    for g in groups:
        torch.nn.utils.clip_grads_with_norm_(g, max_norm, total, foreach=True)
    return total


def use_compile(setting: bool | str, device: torch.device) -> tuple[bool, str]:
    """Whether train.compile compiles the step here, and why (the run's first line says it). On a CPU,
    inductor writes C++: "auto" compiles only where a compiler is on PATH, so a bare machine still trains."""
    if setting != "auto":
        return bool(setting), ""
    if device.type == "cuda":
        return True, "auto: CUDA"
    for cxx in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if cxx and shutil.which(cxx):
            return True, f"auto: C++ compiler {cxx}"
    return False, "auto: no C++ compiler found (install g++ to compile)"
