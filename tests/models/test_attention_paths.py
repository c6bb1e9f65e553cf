"""The attention kernels (SDPA, explicit matmul + softmax) compute the same function; "auto" picks one
by a one-time probe per shape on the CPU."""
import pytest
import torch

from vitlab.models import attn_kernel
from vitlab.models.registry import get_config
from vitlab.models.vit import VisionTransformer


def _tiny(patch: int) -> VisionTransformer:
    torch.manual_seed(0)
    cfg = get_config("vit_mnist", img_size=28, in_chans=1, patch_size=patch, embed_dim=32, depth=2, num_heads=4,
                     mlp_dim=64, num_classes=10, act="gelu")
    model = VisionTransformer(cfg)
    torch.nn.init.normal_(model.head.weight, std=0.1)  # a zero head would hide differences in the logits
    return model


def _set_impl(model: VisionTransformer, impl: str) -> None:
    for blk in model.blocks:
        blk.attn.impl = impl


@pytest.mark.parametrize("patch", [7, 4])  # 17 tokens (explicit by rule on the CPU) and 50 (SDPA)
def test_sdpa_and_explicit_agree_forward_and_backward(patch):
    model = _tiny(patch)
    x = torch.randn(3, 1, 28, 28)
    results = {}
    for impl in ("sdpa", "explicit", "auto"):
        _set_impl(model, impl)
        model.zero_grad()
        out = model(x)
        out.square().sum().backward()
        results[impl] = (out.detach(), model.blocks[0].attn.qkv.weight.grad.clone())
    for impl in ("explicit", "auto"):
        torch.testing.assert_close(results[impl][0], results["sdpa"][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(results[impl][1], results["sdpa"][1], rtol=1e-4, atol=1e-5)


class FakeProbe:
    """Stands in for the timing probe: fixed seconds per kernel, and the shapes it was asked about."""

    def __init__(self) -> None:
        self.times, self.calls = {"explicit": 1.0, "sdpa": 1.0}, []

    def __call__(self, q_shape, keys, dtype, grad) -> dict[str, float]:
        self.calls.append((tuple(q_shape), keys, dtype, grad))
        return dict(self.times)


@pytest.fixture
def fake_probe(monkeypatch):
    """Every call is big enough to probe; the probe answers what the test sets."""
    attn_kernel.forget()
    fake = FakeProbe()
    monkeypatch.setattr(attn_kernel, "probe", fake)
    monkeypatch.setattr(attn_kernel, "PROBE_MIN_MACS", 0)
    yield fake
    attn_kernel.forget()


def test_auto_probes_once_per_shape_and_keeps_the_choice(fake_probe):
    model = _tiny(7)
    x = torch.randn(3, 1, 28, 28)
    fake_probe.times["explicit"] = 2.0  # SDPA clearly faster: it replaces the rule's explicit kernel
    model(x).sum().backward()  # training shapes: 17 queries in the first block, 1 (the class token) in the last
    model(x).sum().backward()
    with torch.no_grad():
        model(x)  # inference is another key: no backward follows
    assert sorted(fake_probe.calls) == sorted([((3, 4, 17, 8), 17, torch.float32, True), ((3, 4, 1, 8), 17, torch.float32, True),
                                               ((3, 4, 17, 8), 17, torch.float32, False), ((3, 4, 1, 8), 17, torch.float32, False)])
    assert set(attn_kernel.chosen().values()) == {"sdpa"}


@pytest.mark.parametrize("explicit_s, expect", [(1.1, "explicit"), (1.3, "sdpa")])
def test_the_rule_holds_unless_the_other_kernel_is_clearly_faster(fake_probe, explicit_s, expect):
    fake_probe.times["explicit"] = explicit_s
    q = torch.randn(2, 4, 17, 8)  # 17 keys: the rule says explicit
    assert attn_kernel.choose("auto", q, q) == expect


def test_small_calls_keep_the_rule_without_probing(fake_probe, monkeypatch):
    monkeypatch.setattr(attn_kernel, "PROBE_MIN_MACS", 1e6)
    short, long = torch.randn(2, 4, 17, 8), torch.randn(2, 4, attn_kernel.RULE_EXPLICIT_MAX_TOKENS + 1, 8)
    assert attn_kernel.choose("auto", short, short) == "explicit"
    assert attn_kernel.choose("auto", long, long) == "sdpa"
    assert fake_probe.calls == [] and attn_kernel.chosen() == {}


def test_the_probe_times_a_slice_of_a_big_batch(fake_probe, monkeypatch):
    monkeypatch.setattr(attn_kernel, "PROBE_MAX_MACS", 2 * 4 * 17 * 17 * 8)  # two images' worth
    q = torch.randn(6, 4, 17, 8)
    attn_kernel.choose("auto", q, q)
    assert fake_probe.calls == [((2, 4, 17, 8), 17, torch.float32, False)]


def test_auto_follows_the_choice_and_cuda_takes_sdpa(fake_probe, monkeypatch):
    used, _sdpa = [], attn_kernel.sdpa_attention
    monkeypatch.setattr(attn_kernel, "sdpa_attention", lambda *a, **k: used.append("sdpa") or _sdpa(*a, **k))
    fake_probe.times["explicit"] = 2.0
    model = _tiny(7).eval()
    with torch.no_grad():
        model(torch.randn(2, 1, 28, 28))
    assert used == ["sdpa"] * 2
    q = torch.empty(1, 4, 17, 8, device="meta")
    assert attn_kernel.choose("auto", q, q) == "sdpa"  # not a CPU: no probe
    assert attn_kernel.choose("explicit", q, q) == "explicit"


def test_the_real_probe_picks_a_kernel_and_maps_stay_available():
    attn_kernel.forget()
    times = attn_kernel.probe(torch.Size([2, 4, 17, 8]), 17, torch.float32, True)
    assert times.keys() == {"explicit", "sdpa"} and all(t > 0 for t in times.values())
    model = _tiny(4).eval()
    _set_impl(model, "sdpa")  # maps are still returned when the fast path is SDPA
    x = torch.randn(2, 1, 28, 28)
    inter = model.forward_intermediates(x, return_attention=True)
    assert inter.attentions[0].shape == (2, 4, 50, 50)
    torch.testing.assert_close(inter.attentions[0].sum(-1), torch.ones(2, 4, 50))
    torch.testing.assert_close(inter.features, model.forward_features(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_tracing_uses_the_rule_without_probing(fake_probe):
    q = torch.randn(1, 2, 17, 8)
    long = torch.randn(1, 2, attn_kernel.RULE_EXPLICIT_MAX_TOKENS + 1, 8)
    traced = []
    torch.jit.trace(lambda a, b: traced.append((attn_kernel.choose("auto", a, a), attn_kernel.choose("auto", b, b))) or a,
                    (q, long), check_trace=False)
    assert set(traced) == {("explicit", "sdpa")} and fake_probe.calls == []


def test_unknown_impl_is_named():
    model = _tiny(7)
    _set_impl(model, "flash")
    with pytest.raises(ValueError, match="flash"):
        model(torch.randn(1, 1, 28, 28))


def test_the_probe_leaves_the_global_random_stream_alone():
    """A probe runs inside a training step, after the step seeded dropout and stochastic depth: drawing its
    random tensors from the global stream would change that step's masks (and a resumed run, which probes at
    another step, would differ from the uninterrupted one)."""
    torch.manual_seed(3)
    before = torch.get_rng_state()
    attn_kernel.probe(torch.Size((2, 2, 5, 4)), 5, torch.float32, True)
    assert torch.equal(torch.get_rng_state(), before)
