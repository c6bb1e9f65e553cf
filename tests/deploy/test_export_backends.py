"""ONNX export round trip, the inference backends, and the messages when a backend cannot be used."""
import json
import sys

import numpy as np
import pytest
import torch

import vitlab
from vitlab import cli
from vitlab.data import EvalTransform
from vitlab.deploy import BackendModel, export_onnx, open_backend, read_config
from vitlab.errors import MissingDependencyError

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'vitlab[onnx]'")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'vitlab[onnx]'")

CLASSES = [f"c{i}" for i in range(10)]


def _model(dynamic: bool = False) -> vitlab.VisionTransformer:
    torch.manual_seed(0)
    m = vitlab.create_model("vit_mnist", img_size=(12, 8), patch_size=4, in_chans=1, embed_dim=32, depth=2,
                            num_heads=2, mlp_dim=64, num_classes=10, mean=(0.3,), std=(0.4,), class_names=CLASSES,
                            act="gelu", dynamic_img_size=dynamic)
    torch.nn.init.normal_(m.head.weight, std=0.5)  # a zero head would make every export look right
    return m.eval()


def _torch(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_export_round_trip_and_metadata(tmp_path):
    model = _model()
    model.save_pretrained(str(tmp_path / "run" / "model"))  # exported from a run directory, as the CLI would
    report = export_onnx(tmp_path / "run", tmp_path / "m.onnx")
    assert len(report.checks) == 1 and report.checks[0][1] <= 1e-4 and "ok" in str(report)
    cfg, meta = read_config(tmp_path / "m.onnx")
    assert cfg == model.cfg
    assert json.loads(meta["classes"]) == CLASSES and json.loads(meta["mean"]) == [0.3]
    assert json.loads(meta["std"]) == [0.4] and json.loads(meta["img_size"]) == [12, 8] and meta["model_name"] == "run"
    batch = onnx.load(str(tmp_path / "m.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert batch[0].dim_param == "batch" and [d.dim_value for d in batch[1:]] == [1, 12, 8]
    x = np.random.default_rng(0).standard_normal((5, 1, 12, 8)).astype(np.float32)  # another batch size
    ort = open_backend(tmp_path / "m.onnx", "onnxruntime")
    np.testing.assert_allclose(ort(x), _torch(model, x), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r"needs \(12, 8\)"):
        ort(np.zeros((1, 1, 8, 8), np.float32))


def test_dynamic_size_export_at_non_square_sizes(tmp_path):
    model = _model(dynamic=True)
    report = export_onnx(model, tmp_path / "d.onnx")
    assert [s for s, _ in report.checks] == [(3, 1, 12, 8), (2, 1, 16, 16)] and "height and width" in str(report)
    ort = open_backend(tmp_path / "d.onnx", "onnxruntime")
    for shape in [(2, 1, 8, 20), (1, 1, 12, 8)]:
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(ort(x), _torch(model, x), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="multiples of the patch size 4"):
        ort(np.zeros((1, 1, 10, 8), np.float32))


@pytest.mark.parametrize("threads, batch, sizes", [(2, 3, [2, 1]), (2, 20, [8, 8, 4]), (3, 7, [3, 3, 1]), (1, 20, [8, 8, 4])])
def test_onnxruntime_runs_a_batch_as_chunks_on_its_threads(tmp_path, threads, batch, sizes):
    model = _model()
    export_onnx(model, tmp_path / "m.onnx", check=False)
    from vitlab.deploy import OnnxRuntimeBackend

    ort = OnnxRuntimeBackend(tmp_path / "m.onnx", threads=threads, chunk=8)
    seen, run = [], ort._run
    ort._run = lambda x: seen.append(len(x)) or run(x)
    x = np.random.default_rng(3).standard_normal((batch, 1, 12, 8)).astype(np.float32)
    out = ort(x)
    assert sorted(seen, reverse=True) == sizes  # even chunks of at most 8, every thread busy on small batches
    np.testing.assert_allclose(out, _torch(model, x), atol=1e-4, rtol=0)  # rows in the batch's order
    np.testing.assert_allclose(out, run(x), atol=1e-5, rtol=0)  # same as the whole batch in one run
    with pytest.raises(ValueError, match="chunk=0"):
        OnnxRuntimeBackend(tmp_path / "m.onnx", chunk=0)
    with pytest.raises(ValueError, match="threads=-1"):
        OnnxRuntimeBackend(tmp_path / "m.onnx", threads=-1)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_backends_agree_with_torch_on_uint8_and_float(tmp_path, backend):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'vitlab[openvino]'")
    model = _model()
    model.save_pretrained(str(tmp_path / "m"))
    run = open_backend(tmp_path / "m", backend)  # a checkpoint: exported on the fly for the ONNX runtimes
    assert run.name == backend and run.cfg.class_names == tuple(CLASSES)
    u8 = np.random.default_rng(2).integers(0, 256, (4, 1, 12, 8), dtype=np.uint8)
    expected = _torch(model, EvalTransform((12, 8), (0.3,), (0.4,), in_chans=1)(torch.from_numpy(u8)).numpy())
    np.testing.assert_allclose(run(u8), expected, atol=1e-4, rtol=0)
    out = BackendModel(run)(torch.from_numpy(u8))
    assert out.shape == (4, 10) and out.dtype == torch.float32


def test_export_carries_the_test_time_preprocessing_and_backends_apply_it(tmp_path):
    model = _model()
    model.cfg.eval_resize, model.cfg.eval_crop_pct, model.cfg.eval_interpolation = "shorter", 0.8, "bicubic"
    export_onnx(model, tmp_path / "m.onnx", check=False)
    cfg, meta = read_config(tmp_path / "m.onnx")
    assert json.loads(meta["preprocess"]) == {"resize": "shorter", "crop_pct": 0.8, "interpolation": "bicubic"}
    assert (cfg.eval_resize, cfg.eval_crop_pct, cfg.eval_interpolation) == ("shorter", 0.8, "bicubic")
    # uint8 images of any size get the exported model's own preprocessing: crop and all
    u8 = np.random.default_rng(4).integers(0, 256, (3, 1, 30, 17), dtype=np.uint8)
    ours = EvalTransform.for_model(model.cfg)(torch.from_numpy(u8)).numpy()
    ort = open_backend(tmp_path / "m.onnx", "onnxruntime")
    np.testing.assert_allclose(ort(u8), _torch(model, ours), atol=1e-4, rtol=0)
    plain = EvalTransform((12, 8), (0.3,), (0.4,), in_chans=1)(torch.from_numpy(u8)).numpy()
    assert np.abs(ort(u8) - _torch(model, plain)).max() > 1e-2  # a plain resize would have scored otherwise


def test_backend_choice_errors(tmp_path, capsys):
    model = _model()
    export_onnx(model, tmp_path / "m.onnx", check=False)
    with pytest.raises(ValueError, match="not one of"):
        open_backend(model, "tensorrt")
    with pytest.raises(ValueError, match="choose --backend onnxruntime or openvino"):
        open_backend(tmp_path / "m.onnx", "torch")
    img = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((12, 8), np.uint8)).save(img)
    assert cli.main(["predict", str(tmp_path / "m.onnx"), str(img), "--backend", "onnxruntime", "--topk", "2"]) == 0
    out = capsys.readouterr().out
    assert str(img) in out and len([ln for ln in out.splitlines() if ln.startswith("  ")]) == 2
    assert cli.main(["predict", str(tmp_path / "m.onnx"), str(img), "--backend", "onnxruntime",
                     "--attention", str(tmp_path / "a.png")]) == 2
    assert "torch backend only" in capsys.readouterr().err


@pytest.mark.parametrize("module,extra", [("onnxruntime", "onnx"), ("openvino", "openvino")])
def test_missing_package_is_one_line_naming_the_pip_command(tmp_path, monkeypatch, capsys, module, extra):
    model = _model()
    model.save_pretrained(str(tmp_path / "m"))
    monkeypatch.setitem(sys.modules, module, None)  # what an absent package looks like to import
    with pytest.raises(MissingDependencyError, match=rf"pip install 'vitlab\[{extra}\]'"):
        open_backend(tmp_path / "m", module)
    assert cli.main(["eval", str(tmp_path / "m"), "--data", "digits", "--backend", module]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{module} is not installed: pip install 'vitlab[{extra}]'" in err


def test_export_and_eval_cli(tmp_path, capsys):
    torch.manual_seed(1)
    model = vitlab.create_model("vit_mnist", img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=1, num_heads=2,
                                mlp_dim=64, num_classes=10, mean=(0.5,), std=(0.5,),
                                class_names=[str(i) for i in range(10)])
    torch.nn.init.normal_(model.head.weight, std=0.5)
    model.save_pretrained(str(tmp_path / "m"))
    assert cli.main(["export", str(tmp_path / "m"), "--to", "onnx", str(tmp_path / "m.onnx")]) == 0
    assert "max |diff|" in capsys.readouterr().out
    tops = []
    for ckpt, backend in [(tmp_path / "m", "torch"), (tmp_path / "m.onnx", "onnxruntime")]:
        assert cli.main(["eval", str(ckpt), "--data", "digits", "--backend", backend]) == 0
        tops.append([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("top-")])
    assert tops[0] == tops[1] and len(tops[0]) == 2
