"""Peer script (runs under .venv-peers): build timm models, fill them with random weights and write them, or
load weights a test wrote; run them on input arrays and write what they compute.

    python timm_model.py JOBS.json

JOBS: a list of {"name": timm model name, "kwargs": create_model kwargs, "random": bool, "weights_in": path |
null, "weights_out": path | null, "inputs": [x.npy, ...], "out": folder}. For input i a job writes
features_i.npy (forward_features), pooled_i.npy (forward_head(pre_logits=True)) and logits_i.npy into its
folder. The last line printed is {"params": [parameter count of each job's model]}.
"""
import json
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import load_file, save_file

torch.set_num_threads(2)
counts = []
for job in json.loads(Path(sys.argv[1]).read_text()):
    torch.manual_seed(0)
    model = timm.create_model(job["name"], pretrained=False, **job["kwargs"]).eval()
    if job.get("random"):
        with torch.no_grad():  # every parameter random (LayerScale and norms included), so each one matters;
            for p in model.parameters():  # kernels scaled by their fan-in, so that outputs stay near unit size
                p.normal_(0.0, p[0].numel() ** -0.5 if p.ndim in (2, 4) else 0.2)
    if job.get("weights_in"):
        model.load_state_dict(load_file(job["weights_in"]), strict=True)
    if job.get("weights_out"):
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, job["weights_out"])
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for i, path in enumerate(job["inputs"]):
            feats = model.forward_features(torch.from_numpy(np.load(path)))
            np.save(out / f"features_{i}.npy", feats.numpy())
            np.save(out / f"pooled_{i}.npy", model.forward_head(feats, pre_logits=True).numpy())
            np.save(out / f"logits_{i}.npy", model.forward_head(feats).numpy())
    counts.append(sum(p.numel() for p in model.parameters()))
print(json.dumps({"params": counts}))
