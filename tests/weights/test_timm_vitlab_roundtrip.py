"""timm state dicts and vitlab's own formats: round trips, nesting, inference of the architecture."""
import pytest
import torch
from safetensors.torch import load_file, save_file

import vitlab
from vitlab.weights import load_model, load_weights, read_checkpoint, save_state_dict, save_timm

# The parameter names of timm's VisionTransformer (token classifier, 1-D learned position embedding).
TIMM_KEYS = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias",
             "head.weight", "head.bias"} | {
    f"blocks.{i}.{m}.{w}" for i in range(2) for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
    for w in ("weight", "bias")}


def tiny(**kw):
    cfg = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_dim=128, num_classes=5)
    model = vitlab.VisionTransformer(vitlab.ViTConfig(**{**cfg, **kw})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def same_outputs(a, b):
    with torch.no_grad():
        return (a(X) - b(X)).abs().max().item()


def test_timm_export_has_timm_names_and_round_trips(tmp_path):
    model = tiny(act="gelu")
    path = save_timm(model, tmp_path / "model.safetensors")
    assert set(load_file(path)) == TIMM_KEYS
    back = load_model(path, num_heads=4)  # no registered variant is 64 wide: the head count must be given
    assert back.cfg.act == "gelu" and back.cfg.norm_eps == 1e-6
    assert same_outputs(model, back) == 0.0


def test_timm_num_heads_needed_for_unknown_width(tmp_path):
    model = tiny(embed_dim=40, num_heads=5)
    path = save_timm(model, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="num_heads"):
        load_model(path)
    assert same_outputs(model, load_model(path, num_heads=5, act="gelu_tanh")) == 0.0


def test_timm_registered_width_infers_heads(tmp_path):
    model = tiny(embed_dim=192, num_heads=3, mlp_dim=64, depth=1)
    assert load_model(save_timm(model, tmp_path / "m.safetensors")).cfg.num_heads == 3


@pytest.mark.parametrize("wrap", ["state_dict", "model"])
def test_timm_pth_nested_and_ddp_prefixed(tmp_path, wrap):
    model = tiny(classifier="gap", act="gelu")
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({wrap: state, "epoch": 3}, tmp_path / "ckpt.pth")
    back = load_model(tmp_path / "ckpt.pth", num_heads=4)
    assert back.cfg.classifier == "gap" and back.num_prefix_tokens == 0
    assert same_outputs(model, back) == 0.0


def test_timm_fc_norm_is_refused_with_reason(tmp_path):
    state = {k: v for k, v in tiny(classifier="gap").state_dict().items() if not k.startswith("norm.")}
    state.update({"fc_norm.weight": torch.ones(64), "fc_norm.bias": torch.zeros(64)})
    save_file(state, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="fc_norm"):
        load_model(tmp_path / "m.safetensors", num_heads=4)


@pytest.mark.parametrize("pos", ["learn2d", "sincos"])
def test_timm_export_materialises_other_position_embeddings(tmp_path, pos):
    model = tiny(pos_embed=pos, act="gelu")
    back = load_model(save_timm(model, tmp_path / "m.safetensors"), num_heads=4)
    assert back.cfg.pos_embed == "learn"
    assert same_outputs(model, back) < 1e-6


def test_vitlab_dir_and_run_dir_round_trip(tmp_path):
    model = tiny(pos_embed="learn2d", class_names=tuple("vwxyz"), mean=(0.1, 0.2, 0.3))
    model.save_pretrained(str(tmp_path / "run" / "model"))
    for path, fmt in ((tmp_path / "run" / "model", "vitlab"), (tmp_path / "run", "vitlab-run")):
        assert read_checkpoint(path).format == fmt
        back = load_model(path)
        assert back.cfg == model.cfg
        assert same_outputs(model, back) == 0.0


def test_vitlab_state_dict_keeps_its_config(tmp_path):
    model = tiny(pos_embed="sincos", act="relu")
    path = save_state_dict(model, tmp_path / "m.safetensors")
    assert read_checkpoint(path).format == "vitlab-state-dict"
    back = load_model(path)
    assert back.cfg == model.cfg and same_outputs(model, back) == 0.0


def test_create_model_with_weights_resamples_from_timm(tmp_path):
    src = tiny(act="gelu")
    path = save_timm(src, tmp_path / "m.safetensors")
    model = vitlab.create_model("vit_ti16", img_size=64, patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_dim=128,
                                num_classes=5, act="gelu", weights=str(path))
    assert model.pos_embed.shape == (1, 1 + 64, 64)
    assert torch.equal(model.head.weight, src.head.weight)  # same class count: the head is kept
    report = load_weights(model, path)
    assert any("4x4 to 8x8" in n for n in report["notes"])
