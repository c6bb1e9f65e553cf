"""Hugging Face transformers ViT as an independent reference: same random weights, same logits, both ways."""
import json

import pytest
import torch
from transformers import ViTConfig as HFConfig
from transformers import ViTForImageClassification, ViTModel
from transformers.utils import logging as hf_logging

import vitlab
from vitlab.weights import load_model, load_weights, save_hf

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

TOL = 1e-5
TINY = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, image_size=32,
            patch_size=8, layer_norm_eps=1e-6)


def randomise(module: torch.nn.Module) -> None:
    """Every parameter, head and biases included, so a single wrong key changes the output."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.3)


def images(n=2, size=32):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(7))


def test_hf_classifier_to_vitlab(tmp_path):
    ref = ViTForImageClassification(HFConfig(**TINY, num_labels=5, hidden_act="gelu")).eval()
    randomise(ref)
    ref.save_pretrained(tmp_path / "hf")
    model = load_model(tmp_path / "hf")
    assert (model.cfg.act, model.cfg.norm_eps, model.cfg.num_heads, model.cfg.num_classes) == ("gelu", 1e-6, 4, 5)
    x = images()
    with torch.no_grad():
        diff = (model(x) - ref(pixel_values=x).logits).abs().max().item()
    print(f"HF classifier -> vitlab: max abs diff {diff:.3g}")
    assert diff <= TOL


def test_vitlab_classifier_to_hf(tmp_path):
    cfg = vitlab.ViTConfig(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=4, mlp_dim=96, num_classes=5,
                           act="gelu_tanh", class_names=tuple("abcde"))
    model = vitlab.VisionTransformer(cfg).eval()
    randomise(model)
    save_hf(model, tmp_path / "hf")
    ref = ViTForImageClassification.from_pretrained(tmp_path / "hf").eval()
    assert ref.config.hidden_act == "gelu_pytorch_tanh" and ref.config.id2label[4] == "e"
    x = images()
    with torch.no_grad():
        diff = (model(x) - ref(pixel_values=x).logits).abs().max().item()
    print(f"vitlab classifier -> HF: max abs diff {diff:.3g}")
    assert diff <= TOL
    back = load_model(tmp_path / "hf")  # and back again: the same weights, bit for bit
    assert back.cfg.class_names == tuple("abcde")
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_hf_pooler_is_vitlab_pre_logits(tmp_path):
    ref = ViTModel(HFConfig(**TINY, pooler_output_size=24, hidden_act="gelu")).eval()
    randomise(ref)
    ref.save_pretrained(tmp_path / "hf")
    model = load_model(tmp_path / "hf")
    assert model.cfg.representation_size == 24 and model.cfg.num_classes == 0
    x = images()
    with torch.no_grad():
        out = ref(pixel_values=x)
        diff = max((model(x) - out.pooler_output).abs().max().item(),
                   (model.forward_features(x) - out.last_hidden_state).abs().max().item())
    print(f"HF ViTModel (pooler) -> vitlab: max abs diff {diff:.3g}")
    assert diff <= TOL


def test_vitlab_pre_logits_to_hf_pooler(tmp_path):
    cfg = vitlab.ViTConfig(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=4, mlp_dim=96, num_classes=0,
                           representation_size=24, act="gelu")
    model = vitlab.VisionTransformer(cfg).eval()
    randomise(model)
    save_hf(model, tmp_path / "hf")
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == ["ViTModel"]
    ref = ViTModel.from_pretrained(tmp_path / "hf").eval()
    x = images()
    with torch.no_grad():
        diff = (model(x) - ref(pixel_values=x).pooler_output).abs().max().item()
    print(f"vitlab pre_logits -> HF pooler: max abs diff {diff:.3g}")
    assert diff <= TOL


def test_hf_export_refuses_what_hf_cannot_hold():
    model = vitlab.VisionTransformer(vitlab.ViTConfig(img_size=32, patch_size=8, embed_dim=48, depth=1, num_heads=4,
                                                      mlp_dim=96, num_classes=5, representation_size=24))
    with pytest.raises(ValueError, match="no pre-logits layer"):
        save_hf(model, "/nonexistent/never-written")


def test_hf_weights_into_larger_model_resample_and_new_head(tmp_path):
    ref = ViTForImageClassification(HFConfig(**TINY, num_labels=5)).eval()
    randomise(ref)
    ref.save_pretrained(tmp_path / "hf")
    model = vitlab.create_model("vit_ti16", img_size=48, patch_size=8, embed_dim=48, depth=2, num_heads=4, mlp_dim=96,
                                num_classes=3, act="gelu", pos_resample="bicubic")
    report = load_weights(model, tmp_path / "hf")
    assert report["format"] == "hf" and not model.head.weight.any()
    assert any("4x4 to 6x6 (bicubic" in n for n in report["notes"])
