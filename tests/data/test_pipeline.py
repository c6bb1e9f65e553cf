"""The streaming path: micro-batches as a pure function of numbers, per-sample crops on the original image,
reduced-size JPEG decoding, unreadable files replaced deterministically (whatever the number of workers) by
stand-ins that carry their own labels."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from vitlab.data import EvalTransform, open_dataset
from vitlab.data.pipeline import CropSpec, StreamingBatches, decode_crop, eval_batches, materialize
from vitlab.data.sampler import BatchSchedule
from vitlab.data.sources import FolderSource


def schedule(n, rank=0, world=1, accum=1, batch=8, epochs=2, seed=0):
    spe = n // batch
    return BatchSchedule(n, seed, spe, epochs * spe, batch, batch // (accum * world), accum, world, rank)


def test_each_epoch_visits_every_sample_once_and_epochs_differ():
    n = 48
    seen = {0: [], 1: []}
    for rank in (0, 1):
        for mb in schedule(n, rank, world=2, accum=2).iterate(0):
            seen[mb.epoch].extend(mb.rows.tolist())
    assert sorted(seen[0]) == list(range(n)) and sorted(seen[1]) == list(range(n))  # over both processes
    order = {e: [mb.rows for mb in schedule(n).iterate(0) if mb.epoch == e] for e in (0, 1)}
    assert not torch.equal(torch.cat(order[0]), torch.cat(order[1]))  # a new order each epoch
    # 2 processes x 1 accumulation step read the micro-batches 1 process with 2 accumulation steps reads
    one = [(mb.step, mb.k, mb.rows.tolist()) for mb in schedule(n, accum=2).iterate(0)]
    two = sorted((mb.step, mb.k, mb.rows.tolist()) for r in (0, 1) for mb in schedule(n, r, world=2).iterate(0))
    assert sorted(one) == two


class Counting(FolderSource):
    """Counts files read (in this process: workers=0)."""

    reads: list

    def read_bytes(self, i):
        self.reads.append(i)
        return super().read_bytes(i)


def counting(src: FolderSource) -> Counting:
    c = Counting(src.root, src.paths, src.labels, src.classes, src.skipped, src.channels)
    c.reads = []
    return c


def test_resume_reads_no_skipped_sample_and_workers_do_not_change_pixels(tmp_path, make_folder):
    src = open_dataset(str(make_folder(tmp_path / "f")), in_memory=False)
    assert isinstance(src, FolderSource) and not src.in_memory
    sch, spec = schedule(len(src), accum=2), CropSpec((16, 16), (0.3, 1.0))
    full = counting(src)
    ref = StreamingBatches(full, sch, 0, spec, 7, "skip", 0, torch.device("cpu"))
    want = {(s, k): ref.get(s, k) for s in range(sch.total_steps) for k in sch.ks()}
    late = counting(src)
    resumed = StreamingBatches(late, sch, 5, spec, 7, "skip", 0, torch.device("cpu"))
    for s in range(5, sch.total_steps):
        for k in sch.ks():
            x, y = resumed.get(s, k)
            assert torch.equal(x, want[s, k][0]) and torch.equal(y, want[s, k][1])
    assert len(late.reads) == (sch.total_steps - 5) * 8  # nothing of steps 0-4 was read
    two = StreamingBatches(src, sch, 0, spec, 7, "skip", 2, torch.device("cpu"))
    for s in range(sch.total_steps):
        for k in sch.ks():
            x, y = two.get(s, k)
            assert x.shape == (4, 3, 16, 16) and x.dtype == torch.uint8
            assert torch.equal(x, want[s, k][0]) and torch.equal(y, want[s, k][1])
    assert torch.equal(two.get(sch.total_steps - 1, 1)[0], want[sch.total_steps - 1, 1][0])  # a step read again
    two.close()
    other_seed = StreamingBatches(src, sch, 0, spec, 8, "skip", 0, torch.device("cpu"))
    assert not torch.equal(other_seed.get(0, 0)[0], want[0, 0][0])


def test_crop_is_taken_on_the_original_image_with_its_aspect_ratio():
    w, h = 300, 100
    ramp = np.broadcast_to((np.arange(w) * 255 / (w - 1)).astype(np.uint8)[None, :, None], (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(ramp)).save(buf, format="PNG")
    # area 100% cannot have a 3:1 aspect inside (3/4, 4/3): the fallback is the centred 133x100 box
    out = decode_crop(buf.getvalue(), "ramp", 3, CropSpec((32, 32), (1.0, 1.0), flip=False), torch.Generator())
    left, right = (w - 133) // 2, (w - 133) // 2 + 133
    assert abs(int(out[:, 0, 0].mean()) - left * 255 / (w - 1)) < 4  # a squashed image would start at 0
    assert abs(int(out[:, -1, 0].mean()) - right * 255 / (w - 1)) < 4  # ... and end at 255


def test_reduced_size_jpeg_decoding_matches_full_decoding_within_the_resize_tolerance(photo):
    yy, xx = np.mgrid[0:480, 0:640]
    texture = 50 * np.sin(xx * 0.35) * np.sin(yy * 0.28)  # detail that survives the resize to 56 px
    img = np.clip(photo(480, 640, 3) + texture[..., None], 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    diffs = []
    for seed in range(20):
        spec = CropSpec((56, 56), (0.3, 1.0))
        fast = decode_crop(data, "p", 3, spec, torch.Generator().manual_seed(seed)).astype(np.int16)
        slow = decode_crop(data, "p", 3, CropSpec((56, 56), (0.3, 1.0), draft=False),
                           torch.Generator().manual_seed(seed)).astype(np.int16)
        diffs.append(np.abs(fast - slow).mean())
    # Decoding at 1/2-1/8 scale (DCT scaling) then resizing differs from a full decode + resize by about one
    # grey level on average here (max 2.5); decoding below the crop's needs (always 1/8) differs by ~4.5.
    assert np.mean(diffs) < 2.0 and max(diffs) < 3.5 and min(diffs) > 0  # > 0: reduced decoding was used


def test_unreadable_files_are_replaced_the_same_way_by_any_worker_count(tmp_path, make_folder):
    root = make_folder(tmp_path / "f", per_class=8)
    src = open_dataset(str(root), in_memory=False)
    (root / "class1" / "003.jpg").write_bytes(b"not a jpeg at all")  # corrupt after the scan
    (root / "class2" / "005.jpg").unlink()  # deleted after the scan
    sch, spec = schedule(len(src), batch=8, epochs=3), CropSpec((12, 12))
    runs = []
    for workers in (0, 2):
        b = StreamingBatches(src, sch, 0, spec, 0, "skip", workers, torch.device("cpu"))
        runs.append([b.get(s, 0) for s in range(sch.total_steps)])
        assert all(len(x) == 8 for x, _ in runs[-1])  # every step keeps its batch size
        names = {p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1] for p, _ in b.skipped}
        assert names == {"class1/003.jpg", "class2/005.jpg"}
        b.close()
    for (xa, ya), (xb, yb) in zip(*runs):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    strict = StreamingBatches(src, sch, 0, spec, 0, "raise", 0, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"class[12]/00[35]\.jpg"):
        for s in range(sch.total_steps):
            strict.get(s, 0)
    # evaluation leaves such files out and names them
    skipped = []
    tf = EvalTransform(12)
    n = sum(len(y) for _, y in eval_batches(src, tf, 5, skipped=skipped))
    assert n == len(src) - 2 and len(skipped) == 2
    ds = materialize(src, tf)
    assert ds.images.shape == (len(src) - 2, 3, 12, 12) and len(ds.skipped) == 2


def test_a_stand_in_carries_its_own_label(tmp_path, make_folder):
    """Every file of class0 turns unreadable after the scan: each of its samples is replaced by a stand-in from
    class1 or class2 and carries that one's label, which its pixels show (class c's pictures: channel c >= 200)."""
    root = make_folder(tmp_path / "f", per_class=8)
    src = open_dataset(str(root), in_memory=False)
    for p in (root / "class0").iterdir():
        p.write_bytes(b"unreadable")
    sch = schedule(len(src), batch=8, epochs=3)
    batches = StreamingBatches(src, sch, 0, CropSpec((12, 12)), 0, "skip", 0, torch.device("cpu"))
    replaced = 0
    for s in range(sch.total_steps):
        x, y = batches.get(s, 0)
        for j, row in enumerate(sch.at(s, 0).rows.tolist()):
            label, cue = int(y[j]), int(x[j].float().mean((1, 2)).argmax())
            if int(src.labels[row]) == 0:
                replaced += 1
                assert label in (1, 2), f"step {s} sample {j}: a stand-in labelled as the unreadable file"
            else:
                assert label == int(src.labels[row])
            assert cue == label, f"step {s} sample {j}: label {label}, pixels of class{cue}"
    assert replaced == 3 * 8  # each epoch reads all 24 images, class0's 8 among them
