"""`vitlab convert` and `vitlab info`: the library's converters behind a command line."""
import torch

import vitlab
from vitlab.cli import main
from vitlab.weights import load_model, save_npz


def official_file(tmp_path):
    model = vitlab.VisionTransformer(vitlab.ViTConfig(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4,
                                                      mlp_dim=128, num_classes=5)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model, save_npz(model, tmp_path / "ViT-tiny.npz")


def test_convert_chain_keeps_outputs(tmp_path, capsys):
    model, npz = official_file(tmp_path)
    assert main(["convert", str(npz), str(tmp_path / "v"), "--to", "vitlab"]) == 0
    assert main(["convert", str(tmp_path / "v"), str(tmp_path / "t.safetensors"), "--to", "timm"]) == 0
    assert main(["convert", str(tmp_path / "t.safetensors"), str(tmp_path / "back.npz"), "--to", "npz",
                 "--num-heads", "4", "--act", "gelu_tanh"]) == 0
    assert main(["convert", str(tmp_path / "back.npz"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    assert "wrote" in capsys.readouterr().out
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
        for path in ("v", "back.npz", "hf"):
            got = load_model(tmp_path / path)
            assert got.cfg.act == "gelu_tanh", path
            assert (got(x) - want).abs().max() < 1e-6, path


def test_info_reports_format_architecture_and_keys(tmp_path, capsys):
    _, npz = official_file(tmp_path)
    assert main(["info", str(npz)]) == 0
    out = capsys.readouterr().out
    assert "format:        official" in out
    assert "depth 2, dim 64, heads 4, mlp 128, patch 8, image 32x32" in out
    n = sum(p.numel() for p in vitlab.load_model(npz).parameters())
    assert f"parameters:    {n:,}" in out and "classes:       5" in out
    assert "Transformer/encoderblock_#: 32" in out


def test_cli_errors_exit_2_with_message(tmp_path, capsys):
    _, npz = official_file(tmp_path)
    assert main(["convert", str(npz), str(npz), "--to", "npz"]) == 2
    assert "is the source" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
