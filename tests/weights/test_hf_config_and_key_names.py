"""What a Hugging Face directory carries besides the weights (layer_norm_eps, preprocessor mean/std)
survives export and import, read back by transformers itself; and transformers 5's in-memory key names
(q_proj/k_proj/v_proj/o_proj, mlp.fc1/fc2) load into the right rows of the fused qkv."""
import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import ViTConfig as HFConfig
from transformers import ViTForImageClassification, ViTImageProcessor
from transformers.utils import logging as hf_logging

import vitlab
from vitlab.weights import load_model, load_weights, save_hf

hf_logging.set_verbosity_error()

MEAN, STD = (0.2, 0.45, 0.7), (0.3, 0.2, 0.1)  # no two equal, and mean != std: a swap or a default shows
TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=4, mlp_dim=96, num_classes=5, act="gelu")


def randomised(**kw) -> vitlab.VisionTransformer:
    m = vitlab.VisionTransformer(vitlab.ViTConfig(**{**TINY, **kw})).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.3)
    return m


def test_export_writes_the_models_eps_and_normalisation_as_transformers_reads_them(tmp_path):
    model = randomised(mean=MEAN, std=STD)
    save_hf(model, tmp_path / "hf")
    raw = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert raw["layer_norm_eps"] == 1e-6  # the official LayerNorm eps, not HF's default 1e-12
    assert HFConfig.from_pretrained(tmp_path / "hf").layer_norm_eps == 1e-6
    proc = ViTImageProcessor.from_pretrained(tmp_path / "hf")
    assert tuple(proc.image_mean) == MEAN and tuple(proc.image_std) == STD
    assert proc.size == {"height": 32, "width": 32}
    back = load_model(tmp_path / "hf")
    assert (back.cfg.mean, back.cfg.std, back.cfg.norm_eps) == (MEAN, STD, 1e-6)


def test_import_takes_normalisation_and_eps_from_a_directory_transformers_wrote(tmp_path):
    ref = ViTForImageClassification(HFConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                             intermediate_size=96, image_size=32, patch_size=8, num_labels=3,
                                             layer_norm_eps=1e-5))
    ref.save_pretrained(tmp_path / "hf")
    ViTImageProcessor(image_mean=list(STD), image_std=list(MEAN)).save_pretrained(tmp_path / "hf")
    model = load_model(tmp_path / "hf")
    assert (model.cfg.mean, model.cfg.std, model.cfg.norm_eps) == (STD, MEAN, 1e-5)


def test_transformers5_in_memory_key_names_load_into_the_right_projections(tmp_path):
    ref = ViTForImageClassification(HFConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                             intermediate_size=96, image_size=32, patch_size=8, num_labels=5,
                                             hidden_act="gelu", layer_norm_eps=1e-6)).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0.0, 0.3)
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    state = {k.replace(".encoder.layer.", ".layers."): v for k, v in state.items()}  # as transformers < 5 names them
    if not any(".attention.q_proj." in k for k in state):  # write transformers-5 names whatever is installed
        ren = {"attention.attention.query": "attention.q_proj", "attention.attention.key": "attention.k_proj",
               "attention.attention.value": "attention.v_proj", "attention.output.dense": "attention.o_proj",
               "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
        for old, new in ren.items():
            state = {k.replace(old, new): v for k, v in state.items()}
    assert any(".layers.0.attention.k_proj.weight" in k for k in state)
    k0, v0 = state["vit.layers.0.attention.k_proj.weight"], state["vit.layers.0.attention.v_proj.weight"]
    assert not torch.equal(k0, v0)  # k and v distinguishable: a swap changes the logits
    save_file(state, tmp_path / "t5.safetensors")
    model = vitlab.VisionTransformer(vitlab.ViTConfig(**TINY, norm_eps=1e-6)).eval()
    load_weights(model, tmp_path / "t5.safetensors")
    q, k, v = model.blocks[0].attn.qkv.weight.detach().chunk(3)
    assert torch.equal(k, k0) and torch.equal(v, v0)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(pixel_values=x).logits, rtol=1e-4, atol=1e-4)
