"""Input-pipeline cost: folders of photo-like JPEGs streamed from disk, the same JPEGs as tar shards and as a
Hugging Face dataset, and the batched transforms.

``folders`` (the default) makes folders of photo-like JPEGs (300-640 px a side, quality 90; made once and
kept under --root) at each --sizes count, packs each into tar shards (`vitlab data pack`, 1000 samples a
shard) and saves it as a Hugging Face dataset (`save_to_disk`, the JPEG bytes in an Image column; needs
`datasets`), and prints, per folder and for the shards and the table holding the same JPEGs:
  - peak RSS of the whole process tree (main process + DataLoader workers, summed; PSS beside it, which
    counts pages shared by the forked workers once) during a short `vitlab train` run of a tiny ViT at
    224 px reading the folder lazily (data.in_memory=false),
  - that run's time to its first optimizer step, and the folder scan's share of it,
  - images/s of vitlab's input pipeline alone (decode at reduced size + Inception crop + flip + resize,
    uint8 out, --workers processes, in the order a run reads: shard by shard for shards), beside timm's loader (ImageFolder + create_transform(224,
    is_training=True), the same worker count; run with --timm-python, a Python that has timm and
    torchvision) and beside PIL decode-only in one process (the limit; its share x workers is printed).
``transforms`` times the batched transforms on a uint8 batch (what runs after the loader).

Measure on idle cores; the CPU is printed. Run from the repository root:

    python3 benchmarks/bench_data.py folders --sizes 4000,16000,64000 --timm-python /tmp/tvenv/bin/python
    python3 benchmarks/bench_data.py transforms --batch 256 --size 28 --img-size 28 --channels 1
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10
POOL = 1000  # distinct images; the folder repeats them as separate files


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


# ------------------------------------------------------------------------------------------ the folders
def photo(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Photo-like content: smooth waves and blobs, edges, texture and sensor noise (JPEG ~30-60 KB at q90)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        a, b, ph = rng.uniform(0.005, 0.03, 3)
        img[..., c] = 120 + 70 * np.sin(a * xx + ph) * np.cos(b * yy) + 30 * np.sin(0.2 * (xx + yy) * rng.uniform(0.2, 1))
    for _ in range(6):  # a few objects with hard edges
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(10, min(h, w) / 3)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_folder(root: Path, n: int) -> Path:
    """root/<n>/class_k/img_i.jpg, reused when complete."""
    out = root / str(n)
    done = out / ".complete"
    if done.is_file():
        return out
    pool_dir = root / "pool"
    pool_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pool = []
    for i in range(POOL):
        p = pool_dir / f"{i}.jpg"
        if not p.is_file():
            h, w = (int(v) for v in rng.integers(300, 641, 2))
            Image.fromarray(photo(h, w, rng)).save(p, quality=90)
        pool.append(p.read_bytes())
    if out.exists():
        shutil.rmtree(out)
    for k in range(CLASSES):
        (out / f"class_{k}").mkdir(parents=True)
    for i in range(n):
        (out / f"class_{i % CLASSES}" / f"img_{i:06d}.jpg").write_bytes(pool[i % POOL])
    done.write_text("")
    return out


# -------------------------------------------------------------------------------------- process memory
def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def _kb(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeMemory:
    """Samples the summed RSS and PSS of a process and its descendants every 50 ms; keeps the peaks."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_rss, self.peak_pss, self._stop = pid, 0, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = _descendants(self.pid)
            self.peak_rss = max(self.peak_rss, sum(_kb(f"/proc/{p}/status", "VmRSS:") for p in pids) * 1024)
            self.peak_pss = max(self.peak_pss, sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids) * 1024)
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


# ------------------------------------------------------------------------------------------ measurements
TRAIN_ARGS = ["data.in_memory=false", "data.batch_size=64", "data.normalize=minus1_1", "data.test_fraction=0.01",
              "model.name=vit_ti16", "model.img_size=224", "model.depth=1", "train.log_every_steps=1",
              "train.eval_every_epochs=1000", "train.ckpt_every_steps=0", "train.compile=false", "train.precision=fp32"]


def make_shards(folder: Path) -> Path:
    """The folder packed as tar shards beside it (<n>-shards), reused when complete."""
    out = folder.with_name(f"{folder.name}-shards")
    if not (out / "dataset.json").is_file():
        from vitlab.data import open_dataset
        from vitlab.data.pack import pack

        shutil.rmtree(out, ignore_errors=True)
        pack(open_dataset(str(folder), in_memory=False), out, 1000, described_as=str(folder))
    return out


def make_hf(folder: Path) -> tuple[Path | None, str]:
    """The folder saved as a Hugging Face dataset beside it (<n>-hf), reused when complete; None and why not
    when `datasets` is not installed."""
    out = folder.with_name(f"{folder.name}-hf")
    if (out / "dataset_info.json").is_file():
        return out, ""
    try:
        import datasets
    except ImportError:
        return None, "datasets is not installed (pip install 'vitlab[hf]')"
    files = sorted(folder.glob("class_*/*.jpg"))
    classes = sorted({f.parent.name for f in files})

    def rows():
        for f in files:
            yield {"image": {"bytes": f.read_bytes(), "path": None}, "label": classes.index(f.parent.name)}

    feats = datasets.Features(image=datasets.Image(), label=datasets.ClassLabel(names=classes))
    with tempfile.TemporaryDirectory() as tmp:  # from_generator writes its arrow file here first
        datasets.Dataset.from_generator(rows, features=feats, cache_dir=tmp).save_to_disk(str(out))
    return out, ""


def train_run(spec: str, workers: int, steps: int) -> tuple[float, float, float, float]:
    """(peak RSS, peak PSS, seconds to the first optimizer step, seconds to the folder's scan being done, NaN
    for shards and tables) of a `vitlab train` run reading `spec` lazily, stopped once its first steps are
    logged."""
    out = Path(tempfile.mkdtemp(prefix="bench_data_run"))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, "-m", "vitlab", "train", "--out", str(out), "--no-progress", f"data.dataset={spec}",
           f"data.workers={workers}", f"schedule.steps={steps}", *TRAIN_ARGS]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    mem = TreeMemory(p.pid)
    scanned: list[float] = []

    def watch() -> None:  # the line after the folder's scan and the in-memory decision
        for line in p.stdout:
            if line.startswith("images: data.in_memory") and not scanned:
                scanned.append(time.perf_counter() - t0)

    threading.Thread(target=watch, daemon=True).start()
    metrics, first = out / "metrics.jsonl", float("nan")
    while p.poll() is None and first != first:
        if metrics.is_file() and '"train_loss"' in metrics.read_text():
            first = time.perf_counter() - t0
        time.sleep(0.02)
    time.sleep(1.0)  # a second of steady streaming for the memory peak
    p.kill()
    p.wait()
    mem.stop()
    shutil.rmtree(out, ignore_errors=True)
    return mem.peak_rss, mem.peak_pss, first, scanned[0] if scanned else float("nan")


def vitlab_pipeline(spec: str, workers: int, batches: int, batch: int) -> float:
    """Images/s of vitlab's streaming reader alone: (step, k) micro-batches of `batch` images at 224 px, in
    the order training reads them (data.shard_order=auto)."""
    from vitlab.data import open_dataset
    from vitlab.data.pipeline import CropSpec, StreamingBatches
    from vitlab.data.shard_order import training_schedule

    src = open_dataset(spec, in_memory=False)
    spe = len(src) // batch
    sch = training_schedule("auto", src, 0, spe, spe * 100, batch, batch, 1, 1, 0, workers)
    sb = StreamingBatches(src, sch, 0, CropSpec((224, 224)), 0, "skip", workers, torch.device("cpu"))
    warm = max(2, workers * 2)
    for s in range(warm):
        sb.get(s, 0)
    t0 = time.perf_counter()
    for s in range(warm, warm + batches):
        sb.get(s, 0)
    dt = time.perf_counter() - t0
    sb.close()
    return batches * batch / dt


TIMM_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    from timm.data import create_dataset, create_transform
    folder, workers, batches, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    ds = create_dataset("", root=folder, split="train", is_training=True)
    ds.transform = create_transform(224, is_training=True)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=True,
                                     drop_last=True, generator=torch.Generator().manual_seed(0))
    it = iter(dl)
    for _ in range(max(2, workers * 2)):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    print(batches * batch / (time.perf_counter() - t0))
""")


def timm_pipeline(python: str | None, folder: Path, workers: int, batches: int, batch: int) -> tuple[float, str]:
    """timm's loader images/s, run by `python` (a Python with timm and torchvision), or NaN and why not."""
    if not python:
        return float("nan"), "no --timm-python given"
    r = subprocess.run([python, "-c", TIMM_SCRIPT, str(folder), str(workers), str(batches), str(batch)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return float("nan"), r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
    return float(r.stdout.strip().splitlines()[-1]), ""


def decode_only(folder: Path, n: int) -> float:
    """PIL full decode, one process, files read from disk: the per-process limit of any JPEG pipeline."""
    files = sorted(folder.glob("class_*/*.jpg"))[:n]
    t0 = time.perf_counter()
    for f in files:
        with Image.open(f) as im:
            im.load()
    return len(files) / (time.perf_counter() - t0)


def folders(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    print(f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}; workers {args.workers}; "
          f"tiny ViT (vit_ti16, depth 1) at 224 px, batch 64")
    rows, notes = [], set()
    for n in (int(v) for v in args.sizes.split(",")):
        folder = make_folder(Path(args.root), n)
        hf, why_not = make_hf(folder)
        notes |= {f"hf: {why_not}"} if why_not else set()
        peer, why = timm_pipeline(args.timm_python, folder, args.workers, args.batches, 64)
        notes |= {f"timm: {why}"} if why else set()
        limit = decode_only(folder, 500)
        for kind, spec in (("folder", folder), ("shards", make_shards(folder)), ("hf", hf)):
            if spec is None:
                continue
            rss, pss, first, scanned = train_run(str(spec), args.workers, args.steps)
            mine = vitlab_pipeline(str(spec), args.workers, args.batches, 64)
            rows.append((n, kind, rss, pss, first, scanned, mine, peer, limit))
        print(f"  {n} images: done", flush=True)
    print(f"\n{'images':>7} {'source':>7} {'peak RSS':>9} {'peak PSS':>9} {'1st step':>9} {'(scan)':>7} "
          f"{'vitlab img/s':>13} {'timm img/s':>11} {'vs timm':>8} {'decode-only':>12} {'of limit x W':>13}")
    for n, kind, rss, pss, first, scanned, mine, peer, limit in rows:
        print(f"{n:>7} {kind:>7} {rss / 2**30:8.2f}G {pss / 2**30:8.2f}G {first:8.1f}s {scanned:6.1f}s {mine:13.0f} "
              f"{peer:11.0f} {mine / peer:7.2f}x {limit:12.0f} {mine / (limit * args.workers):12.0%}")
    print("timm's loader and decode-only read the folder; shards and hf hold the same JPEGs")
    for note in sorted(notes):
        print(note)
    for kind in ("folder", "shards", "hf"):
        mine = [r for r in rows if r[1] == kind]
        for r in mine[1:]:
            print(f"{kind}: peak RSS at {r[0]} vs {mine[0][0]}: {r[2] / mine[0][2]:.2f}x; time to first step "
                  f"{r[4] / mine[0][4]:.2f}x")


# ------------------------------------------------------------------------------------------ transforms
def time_it(fn: Callable[[], object], rounds: int, reps: int) -> float:
    """Median seconds per call over `rounds` rounds of `reps` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t0) / reps)
    return statistics.median(times)


def transforms(args: argparse.Namespace) -> None:
    from vitlab.data import EvalTransform, Mixup, TrainTransform

    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.batch, args.channels, args.size, args.size), dtype=torch.uint8, generator=g)
    x = x.to(args.device)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(args.device)
    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=10)
    cases = {
        "eval (resize + normalise)": EvalTransform(args.img_size),
        "train crop+flip": TrainTransform(args.img_size),
        "train crop+flip+RandAugment(2,9)": TrainTransform(args.img_size, randaugment=(2, 9)),
        "train crop+flip+RA(2,9)+erasing 0.25": TrainTransform(args.img_size, randaugment=(2, 9), random_erasing=0.25),
    }
    print(f"batch {tuple(x.shape)} uint8 -> {args.img_size}x{args.img_size}, device {args.device}, "
          f"threads {torch.get_num_threads()}")
    print(f"{'transform':40s} {'ms/batch':>9s} {'images/s':>10s}")
    for name, tf in cases.items():
        s = time_it(lambda tf=tf: tf(x, g), args.rounds, args.reps)
        print(f"{name:40s} {s * 1e3:9.2f} {args.batch / s:10.0f}")
    xf = cases["train crop+flip"](x, g)
    s = time_it(lambda: mix(xf, y, g), args.rounds, args.reps)
    print(f"{'mixup/cutmix + smoothing (float batch)':40s} {s * 1e3:9.2f} {args.batch / s:10.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what")
    f = sub.add_parser("folders", help="JPEG folders, tar shards and HF tables streamed from disk: memory, first "
                                       "step, images/s vs timm")
    f.add_argument("--sizes", default="4000,16000,64000", help="folder sizes (images), comma-separated")
    f.add_argument("--root", default=str(Path(tempfile.gettempdir()) / "vitlab-bench-jpegs"))
    f.add_argument("--workers", type=int, default=2)
    f.add_argument("--steps", type=int, default=3, help="training steps of the memory / first-step run")
    f.add_argument("--batches", type=int, default=20, help="64-image batches timed per pipeline")
    f.add_argument("--timm-python", default=None, help="a Python with timm + torchvision for the peer loader")
    t = sub.add_parser("transforms", help="the batched transforms on a uint8 batch")
    t.add_argument("--batch", type=int, default=256)
    t.add_argument("--channels", type=int, default=1)
    t.add_argument("--size", type=int, default=28, help="stored image size")
    t.add_argument("--img-size", type=int, default=28, help="model input size")
    t.add_argument("--rounds", type=int, default=5)
    t.add_argument("--reps", type=int, default=10)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--device", default="cpu")
    args = ap.parse_args(sys.argv[1:] or ["folders"])
    (transforms if args.what == "transforms" else folders)(args)


if __name__ == "__main__":
    main()
