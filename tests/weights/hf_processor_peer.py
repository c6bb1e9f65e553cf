"""Peer script (run under the peer environment, where torchvision is installed): every image of a job through
each Hugging Face directory's image processor, as a user gets it by default and with each backend named.

    python hf_processor_peer.py WORKDIR
reads WORKDIR/job.json ({"dirs": [...], "images": [...]}, paths), writes each result to
WORKDIR/<dir name>.<variant>.<image stem>.npy and prints one JSON line: for each directory and variant,
the processor's class and backend, and torch's CPU kernels ("cpu": AVX2, AVX512, DEFAULT, ...)."""
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

VARIANTS = {"default": {}, "use_fast": {"use_fast": True}, "pil": {"backend": "pil"}}

transformers.utils.logging.set_verbosity_error()
work = Path(sys.argv[1])
job = json.loads((work / "job.json").read_text())
info = {"cpu": torch.backends.cpu.get_cpu_capability()}
for d in map(Path, job["dirs"]):
    for variant, kwargs in VARIANTS.items():
        proc = transformers.AutoImageProcessor.from_pretrained(d, **kwargs)
        info[f"{d.name}.{variant}"] = {"class": type(proc).__name__, "backend": proc.backend}
        for path in map(Path, job["images"]):
            pixels = proc(Image.open(path), return_tensors="np")["pixel_values"][0]
            np.save(work / f"{d.name}.{variant}.{path.stem}.npy", pixels.astype(np.float32))
print(json.dumps(info))
