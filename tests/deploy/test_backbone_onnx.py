"""ONNX export of today's backbones with dynamic image size: registers with patch-only position embeddings,
LayerScale, the MAP head, CLIP's pre-norm and QK-norm all trace, and the graph matches torch at other sizes."""
import pytest
import torch

import vitlab
from vitlab.deploy import export_onnx

pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'vitlab[onnx]'")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'vitlab[onnx]'")


@pytest.mark.parametrize("switches", [
    dict(reg_tokens=4, no_embed_class=True, init_values=0.5, act="swiglu", pos_resample="bicubic_aa"),
    dict(classifier="map", act="gelu_tanh", pos_resample="bicubic"),
    dict(pre_norm=True, patch_bias=False, act="quick_gelu", qk_norm=True),
], ids=["dinov2_reg_swiglu", "siglip", "clip_qknorm"])
def test_dynamic_size_export_of_backbones(tmp_path, switches):
    """bicubic_aa resampling traces as explicit filter matrices (ONNX has no antialiased bicubic operator)."""
    torch.manual_seed(0)
    m = vitlab.create_model("vit_mnist", img_size=(12, 8), patch_size=4, in_chans=3, embed_dim=32, depth=2,
                            num_heads=2, mlp_dim=64, num_classes=6, dynamic_img_size=True, **switches)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.3)
    report = export_onnx(m.eval(), tmp_path / "m.onnx")
    assert len(report.checks) == 2 and report.checks[1][0][2:] == (16, 16)  # the trained size and a larger one
    assert max(d for _, d in report.checks) <= 1e-4, report
