"""Peer script (runs under .venv-peers): build a timm model, optionally fill it with random weights and write
them, or load weights a test wrote; run it on input arrays and write what it computes.

    python timm_model.py SPEC.json

SPEC: {"name": timm model name, "kwargs": create_model kwargs, "random": bool, "weights_in": path | null,
"weights_out": path | null, "inputs": [x.npy, ...], "out": folder}. For each input i it writes
features_i.npy (forward_features), pooled_i.npy (forward_head(pre_logits=True)) and logits_i.npy, and
prints {"params": n} as its last line.
"""
import json
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import load_file, save_file

spec = json.loads(Path(sys.argv[1]).read_text())
torch.manual_seed(0)
model = timm.create_model(spec["name"], pretrained=False, **spec["kwargs"]).eval()
if spec.get("random"):
    with torch.no_grad():  # every parameter random (LayerScale and norms included), so each one matters
        for p in model.parameters():  # kernels scaled by their fan-in, so that outputs stay near unit size
            p.normal_(0.0, p[0].numel() ** -0.5 if p.ndim in (2, 4) else 0.2)
if spec.get("weights_in"):
    model.load_state_dict(load_file(spec["weights_in"]), strict=True)
if spec.get("weights_out"):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, spec["weights_out"])
out = Path(spec["out"])
with torch.no_grad():
    for i, path in enumerate(spec["inputs"]):
        x = torch.from_numpy(np.load(path))
        feats = model.forward_features(x)
        np.save(out / f"features_{i}.npy", feats.numpy())
        np.save(out / f"pooled_{i}.npy", model.forward_head(feats, pre_logits=True).numpy())
        np.save(out / f"logits_{i}.npy", model(x).numpy())
print(json.dumps({"params": sum(p.numel() for p in model.parameters())}))
