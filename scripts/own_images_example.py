"""The README's worked example ("Your own images"), end to end on a CPU in a few minutes.

    python3 scripts/own_images_example.py runs/example            # the README's budget
    python3 scripts/own_images_example.py runs/example --quick    # a smoke test (tests/test_own_images_example.py)

1. Two folders of RGB "photos" at their own sizes: random crops (48-160 px, JPEG) of scikit-image's
   sample pictures, one class per picture (pip install 'vitlab[examples]' for scikit-image).
   photos_a/ has 4 classes, photos/ 4 other ones; neither has a test/ folder.
2. Pretrain a small ViT on photos_a at 32x32: a vitlab checkpoint, RGB, with its own class names.
3. Fine-tune it on photos at 48x48 with a new head (model.reset_head=true): the position embeddings are
   resampled to the larger grid, and 20% of photos/ is held out as the test set (RUN/split.json).
4. With the best checkpoint (--checkpoint best): vitlab eval (on the held-out images), vitlab predict
   --attention, vitlab predict --out predictions.csv, vitlab convert --to hf.

Every command is printed before it runs, with its output, and the wall time at the end.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

PRETRAIN = ("astronaut", "coffee", "rocket", "colorwheel")
FINETUNE = ("chelsea", "hubble_deep_field", "immunohistochemistry", "retina")
SMALL_VIT = ["model.depth=4", "model.embed_dim=96", "model.num_heads=3", "model.mlp_dim=192", "model.patch_size=8"]


def make_photos(root: Path, pictures: tuple[str, ...], per_class: int, seed: int) -> Path:
    """`per_class` random crops of each sample picture, saved as JPEG at the crop's own size."""
    try:
        import skimage.data
    except ImportError:
        sys.exit("this example needs scikit-image: pip install 'vitlab[examples]'")
    rng = np.random.default_rng(seed)
    for name in pictures:
        img = getattr(skimage.data, name)()
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(48, 161, size=2))
            h, w = min(h, img.shape[0]), min(w, img.shape[1])
            y, x = int(rng.integers(0, img.shape[0] - h + 1)), int(rng.integers(0, img.shape[1] - w + 1))
            Image.fromarray(img[y : y + h, x : x + w]).save(root / name / f"crop_{i:03d}.jpg", quality=90)
    return root


def vitlab(*args: object) -> None:
    """Run one `vitlab` command as a user would, echoing it."""
    cmd = [sys.executable, "-m", "vitlab", *map(str, args)]
    print("\n$ vitlab " + " ".join(shlex.quote(str(a)) for a in args), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="working folder (photos, runs, outputs)")
    ap.add_argument("--quick", action="store_true", help="few images and steps: checks the path, not the accuracy")
    args = ap.parse_args()
    out: Path = args.out
    per_class, pre_epochs, ft_epochs = (16, 2, 2) if args.quick else (50, 8, 8)
    t0 = time.perf_counter()
    photos_a = make_photos(out / "photos_a", PRETRAIN, per_class, seed=0)
    photos = make_photos(out / "photos", FINETUNE, per_class, seed=1)
    print(f"made {len(PRETRAIN) * per_class} + {len(FINETUNE) * per_class} photos (48-160 px crops) in {out}")

    quiet = ["--no-progress"]  # log lines, not bars: the guide shows what this prints
    vitlab("train", "--out", out / "pretrain", *quiet, f"data.dataset={photos_a}", "model.name=vit_mnist", *SMALL_VIT,
           "data.image_size=32", "data.batch_size=32", f"schedule.epochs={pre_epochs}", "schedule.warmup_epochs=1",
           "optim.lr=1e-3")
    vitlab("train", "--out", out / "finetune", *quiet, f"data.dataset={photos}", "model.name=null",
           f"model.weights={out / 'pretrain' / 'model'}", "model.reset_head=true", "model.img_size=48",
           "data.batch_size=32", f"schedule.epochs={ft_epochs}", "schedule.warmup_epochs=1", "optim.lr=5e-4",
           "data.cache=" + str(out / "photos_cache.npz"))
    run = out / "finetune"
    vitlab("eval", run, "--checkpoint", "best")
    vitlab("predict", run, *(photos / c / "crop_000.jpg" for c in FINETUNE), "--checkpoint", "best", "--topk", "2",
           "--attention", out / "attention" / "photo.png")
    vitlab("predict", run, photos, "--checkpoint", "best", "--out", out / "predictions.csv")
    vitlab("convert", run, out / "hf", "--checkpoint", "best", "--to", "hf")
    print(f"\nwhole example: {time.perf_counter() - t0:.0f} s wall on {os.cpu_count()} CPU core(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
