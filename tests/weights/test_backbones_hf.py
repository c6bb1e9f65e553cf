"""Today's backbones against transformers: random configs of Dinov2Model (MLP and SwiGLU),
Dinov2WithRegistersModel, SiglipVisionModel, CLIPVisionModel[WithProjection] and full SiglipModel /
CLIPModel directories load through ``load_model(dir)`` alone and give transformers' outputs (<= 1e-5, fp32),
at the trained size and at another (``interpolate_pos_encoding``); ``vitlab convert --to hf`` writes
directories transformers loads back to the same outputs."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

import vitlab  # noqa: E402
from vitlab.weights import export, load_model  # noqa: E402

TOL = 1e-5
SMALL = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=96, image_size=28,
             patch_size=7)
T = transformers
CASES = {
    "dinov2": (T.Dinov2Model, lambda: T.Dinov2Config(**SMALL)),
    "dinov2_swiglu": (T.Dinov2Model, lambda: T.Dinov2Config(**SMALL, use_swiglu_ffn=True)),
    "dinov2_reg": (T.Dinov2WithRegistersModel, lambda: T.Dinov2WithRegistersConfig(**SMALL, num_register_tokens=3)),
    "siglip": (T.SiglipVisionModel, lambda: T.SiglipVisionConfig(**SMALL)),
    "clip": (T.CLIPVisionModel, lambda: T.CLIPVisionConfig(**SMALL)),
}


def randomised(model):
    """Every parameter random (LayerScale and norms too), kernels scaled by fan-in: outputs near unit size."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, p[0].numel() ** -0.5 if p.ndim in (2, 4) else 0.2)
    return model.eval()


def hf_outputs(model, x, **kw):
    """(token features, pooled) as vitlab names them: CLIP's last_hidden_state precedes its final norm."""
    with torch.no_grad():
        o = model(pixel_values=x, **kw)
    return o.last_hidden_state, o.pooler_output


def vitlab_outputs(model, x, clip: bool):
    with torch.no_grad():
        inter = model.forward_intermediates(x, indices=1)
        return (inter.tokens[-1] if clip else inter.features), model.forward_head(inter.features, pre_logits=True)


def diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


@pytest.fixture(scope="module", params=list(CASES))
def saved(request, tmp_path_factory):
    cls, make = CASES[request.param]
    torch.manual_seed(0)
    model = randomised(cls(make()))
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path)
    return request.param, model, path


def test_hf_directory_loads_with_the_same_outputs(saved):
    key, hf, path = saved
    model = load_model(path)
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    assert diff(hf_outputs(hf, x), vitlab_outputs(model, x, key == "clip")) <= TOL
    expect = {"dinov2_reg": dict(reg_tokens=3, no_embed_class=True), "siglip": dict(classifier="map"),
              "clip": dict(pre_norm=True, patch_bias=False, act="quick_gelu", norm_eps=1e-5),
              "dinov2_swiglu": dict(act="swiglu")}.get(key, dict(act="gelu", init_values=1.0))
    assert {k: getattr(model.cfg, k) for k in expect} == expect


def test_hf_interpolated_position_embeddings_match(saved):
    """At 42 px (6x6 patches instead of 4x4) vitlab resamples as transformers' interpolate_pos_encoding does."""
    key, hf, path = saved
    x = torch.randn(1, 3, 42, 42, generator=torch.Generator().manual_seed(2))
    want = hf_outputs(hf, x, interpolate_pos_encoding=True)
    for model in (load_model(path, dynamic_img_size=True), load_model(path, img_size=42)):
        assert diff(want, vitlab_outputs(model, x, key == "clip")) <= TOL


def test_convert_to_hf_loads_back_equal(saved, tmp_path):
    key, hf, path = saved
    export(load_model(path), tmp_path, "hf")
    back = type(hf).from_pretrained(tmp_path).eval()
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(3))
    assert diff(hf_outputs(back, x), hf_outputs(hf, x)) == 0.0


def test_clip_projection_is_the_head(tmp_path):
    hf = randomised(T.CLIPVisionModelWithProjection(T.CLIPVisionConfig(**SMALL, projection_dim=16)))
    hf.save_pretrained(tmp_path / "src")
    model = load_model(tmp_path / "src")
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        assert (hf(pixel_values=x).image_embeds - model(x)).abs().max().item() <= TOL
    export(model, tmp_path / "back", "hf")
    back = T.CLIPVisionModelWithProjection.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        assert torch.equal(back(pixel_values=x).image_embeds, hf(pixel_values=x).image_embeds)


@pytest.mark.parametrize("kind", ["siglip", "clip"])
def test_full_image_text_model_reads_its_image_tower(tmp_path, kind):
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    if kind == "siglip":
        hf = T.SiglipModel(T.SiglipConfig(text_config=text, vision_config=SMALL))
    else:
        hf = T.CLIPModel(T.CLIPConfig(text_config=text, vision_config=SMALL, projection_dim=16))
    randomised(hf).save_pretrained(tmp_path)
    model = load_model(tmp_path)
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        want = hf.vision_model(pixel_values=x).pooler_output
        if kind == "clip":  # the projection into the joint space is the head
            assert (hf.get_image_features(pixel_values=x).pooler_output - model(x)).abs().max().item() <= TOL
    assert (want - vitlab_outputs(model, x, kind == "clip")[1]).abs().max().item() <= TOL


def test_export_refuses_what_transformers_cannot_hold(tmp_path):
    base = dict(img_size=28, patch_size=7, embed_dim=48, depth=1, num_heads=3, mlp_dim=96, act="gelu", num_classes=0,
                init_values=1.0)
    for kw, why in [(dict(qk_norm=True), "QK-norm"), (dict(num_classes=5), "reset_classifier"),
                    (dict(reg_tokens=2), "no_embed_class")]:
        model = vitlab.VisionTransformer(vitlab.ViTConfig(**{**base, **kw}))
        with pytest.raises(ValueError, match=why):
            export(model, tmp_path / "out", "hf")


def test_cli_convert_to_timm_and_back(saved, tmp_path, capsys):
    """`vitlab convert DIR FILE --to timm`: a timm file says everything but the activation (no shape does) and,
    at this unregistered width, the head count."""
    from vitlab import cli

    key, hf, path = saved
    assert cli.main(["convert", str(path), str(tmp_path / "m.safetensors"), "--to", "timm"]) == 0
    model = load_model(path)
    back = load_model(tmp_path / "m.safetensors", act=model.cfg.act, num_heads=3)
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(back.forward_features(x), model.forward_features(x))
    assert {f: getattr(back.cfg, f) for f in ("reg_tokens", "no_embed_class", "classifier", "pre_norm", "patch_bias")} \
        == {f: getattr(model.cfg, f) for f in ("reg_tokens", "no_embed_class", "classifier", "pre_norm", "patch_bias")}


@pytest.mark.parametrize("name, cls, make", [
    ("vit_s14_reg4_dinov2", T.Dinov2WithRegistersModel,
     lambda: T.Dinov2WithRegistersConfig(hidden_size=384, num_attention_heads=6, image_size=224, patch_size=14)),
    ("vit_b16_siglip_224", T.SiglipVisionModel, lambda: T.SiglipVisionConfig(image_size=224, patch_size=16)),
    ("vit_b16_clip", T.CLIPVisionModel, lambda: T.CLIPVisionConfig(image_size=224, patch_size=16)),
])
def test_full_size_tower_is_the_registered_model(tmp_path, name, cls, make):
    """One tower of each family at its real width and depth (224 px): the registry's architecture, same outputs."""
    from vitlab.models.registry import get_config

    hf = randomised(cls(make()))
    hf.save_pretrained(tmp_path)
    model = load_model(tmp_path)
    want = get_config(name, img_size=224)
    arch = ("patch_size", "embed_dim", "depth", "num_heads", "mlp_dim", "classifier", "reg_tokens", "no_embed_class",
            "pre_norm", "patch_bias", "qk_norm", "norm_eps", "act", "num_classes", "img_size")
    assert {f: getattr(model.cfg, f) for f in arch} == {f: getattr(want, f) for f in arch}
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    assert diff(hf_outputs(hf, x), vitlab_outputs(model, x, "clip" in name)) <= TOL
    named = vitlab.create_model(name, img_size=224, weights=str(tmp_path))  # the registry name takes the weights
    with torch.no_grad():
        assert torch.equal(named(x), model(x))
