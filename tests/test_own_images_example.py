"""The worked example of docs/guides/own-images.md (scripts/own_images_example.py) runs end to end at a small
budget, and prints the kinds of line the guide shows it printing."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guides" / "own-images.md"


def _doc_blocks():
    spec = importlib.util.spec_from_file_location("doc_blocks", ROOT / "scripts" / "doc_blocks.py")
    mod = sys.modules["doc_blocks"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_worked_example_runs_end_to_end(tmp_path):
    pytest.importorskip("skimage", reason="the example cuts its photos from scikit-image's samples")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "own_images_example.py"), str(tmp_path), "--quick"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ft = tmp_path / "finetune"
    split = json.loads((ft / "split.json").read_text())
    assert split["n_test"] == 13 and "held-out test images" in r.stdout  # eval used the held-out images
    cfg = json.loads((ft / "model" / "config.json").read_text())
    assert cfg["in_chans"] == 3 and list(cfg["img_size"]) == [48, 48]
    assert cfg["class_names"] == ["chelsea", "hubble_deep_field", "immunohistochemistry", "retina"]
    assert len(list((tmp_path / "attention").glob("photo_*.png"))) == 4
    assert len((tmp_path / "predictions.csv").read_text().splitlines()) == 1 + 64
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "vit"

    blocks = _doc_blocks()
    [shown] = [b for b in blocks.parse(GUIDE) if b.output is not None]
    why = blocks.output_mismatch(shown, r.stdout.replace(str(tmp_path), "runs/example"))
    assert why is None, why
