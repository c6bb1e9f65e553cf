"""WebDataset tar shards: `vitlab data pack` writes shards the webdataset library reads by itself, vitlab reads
shards webdataset wrote, split layouts, the cached index, held-out splits by key, and the shard-sequential
partition over processes and workers (every sample of an epoch once, contiguous shard stretches per reader,
a function of the numbers alone, resume = the tail of the uninterrupted order)."""
import io
import json
import os
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from vitlab.cli import main
from vitlab.data import has_test_split, load_digits, open_dataset
from vitlab.data.pack import pack, parse_shard_size, sample_key
from vitlab.data.shard_order import ShardSchedule, buffer_shuffle, training_schedule
from vitlab.data.sources import shards as shard_mod
from vitlab.data.splits import open_heldout, open_run_data


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):  # shard indexes go to the test's directory, not ~/.cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def folder(tmp_path, make_folder):
    return make_folder(tmp_path / "photos", per_class=10)


def _webdataset():
    return pytest.importorskip("webdataset", reason="webdataset (in the test extra) checks the shard format")


def _tars(d):
    return [str(p) for p in sorted(d.glob("*.tar"))]


def test_pack_is_read_by_webdataset_itself(tmp_path, folder):
    wds = _webdataset()
    assert main(["data", "pack", str(folder), str(tmp_path / "sh"), "--shard-size", "7"]) == 0
    index = json.loads((tmp_path / "sh" / "dataset.json").read_text())
    assert index["classes"] == ["class0", "class1", "class2"] and index["samples"] == 30
    assert [s["samples"] for s in index["shards"]] == [7, 7, 7, 7, 2]
    got = list(wds.WebDataset(_tars(tmp_path / "sh"), shardshuffle=False))  # no vitlab code reads these
    assert len(got) == 30 and len({s["__key__"] for s in got}) == 30
    for s in got:
        assert s["jpg"] == (folder / f"{s['__key__']}.jpg").read_bytes()  # the original bytes
        assert int(s["cls"]) == int(s["__key__"][len("class")])
        assert json.loads(s["json"])["class_name"] == s["__key__"].split("/")[0]
    decoded = next(iter(wds.WebDataset(_tars(tmp_path / "sh"), shardshuffle=False).decode("pil")))
    assert decoded["jpg"].size == Image.open(folder / f"{decoded['__key__']}.jpg").size
    assert [s["__key__"] for s in got] != sorted(s["__key__"] for s in got)  # written in a shuffled order


def test_pack_caps_bytes_and_is_reproducible(tmp_path, folder):
    for out in ("a", "b"):
        assert main(["data", "pack", str(folder), str(tmp_path / out), "--shard-size", "25KB"]) == 0
    files = sorted((tmp_path / "a").glob("*.tar"))
    assert len(files) > 2 and all(f.stat().st_size <= 25_000 for f in files)
    assert [f.read_bytes() for f in files] == [f.read_bytes() for f in sorted((tmp_path / "b").glob("*.tar"))]
    assert main(["data", "pack", str(folder), str(tmp_path / "a"), "--shard-size", "25KB"]) == 2  # holds shards
    assert parse_shard_size("1.5GiB").bytes == int(1.5 * 2**30) and parse_shard_size(100).samples == 100
    for bad in ("0", "12 parsecs", "1.5"):
        with pytest.raises(ValueError, match="--shard-size"):
            parse_shard_size(bad)
    assert sample_key("class0/img.v2.jpg") == "class0/img%2Ev2" and sample_key("a.b/00000012") == "a.b/00000012"
    assert sample_key(sample_key("x/a.b.png")) == sample_key("x/a.b.png")  # re-packing shards keeps their keys


def test_pack_encodes_arrays_as_png(tmp_path):
    digits = load_digits("train")
    index = pack(digits, tmp_path / "d", 500, seed=None)
    assert index["samples"] == len(digits) and index["order"] == "source order"
    src = open_dataset(str(tmp_path / "d"))
    assert src.classes == digits.classes and src.channels == 1
    for i in (0, 7, len(digits) - 1):
        assert src.paths[i] == f"{i:08d}" and int(src.labels[i]) == int(digits.labels[i])
        arr = np.asarray(Image.open(io.BytesIO(src.read_bytes(i))))
        assert np.array_equal(arr, digits.images[i, 0].numpy())


def _png(value, size=(5, 7)):
    buf = io.BytesIO()
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_shards_written_by_webdataset_are_read(tmp_path):
    wds = _webdataset()
    d = tmp_path / "foreign"
    d.mkdir()
    with wds.TarWriter(str(d / "part-0.tar")) as w:
        w.write({"__key__": "a/x1", "png": _png(10), "cls": 1, "json": {"class_name": "dog"}})
        w.write({"__key__": "a/x2", "jpeg": _png(20), "cls": 0, "json": {"class_name": "cat"}})  # bytes as given
        w.write({"__key__": "a/no_label", "png": _png(30)})
    with wds.TarWriter(str(d / "part-1.tar")) as w:
        w.write({"__key__": "b/x3", "webp": _png(40), "cls": 1})
        w.write({"__key__": "b/no_image", "cls": 0})
        w.write({"__key__": "b/unlabelled", "png": _png(60), "cls": -1})
        w.write({"__key__": "a/x1", "png": _png(50), "cls": 0})  # a key met before
    src = open_dataset(str(d))
    assert list(src.paths) == ["a/x1", "a/x2", "b/x3"] and src.labels.tolist() == [1, 0, 1]
    assert src.classes == ["cat", "dog"]  # from the samples' json
    assert [src.read_bytes(i) for i in range(3)] == [_png(10), _png(20), _png(40)]
    why = dict(src.skipped)
    assert why[f"{d / 'part-0.tar'}:a/no_label"].startswith("no cls")
    assert why[f"{d / 'part-1.tar'}:b/no_image"].startswith("no image")
    assert why[f"{d / 'part-1.tar'}:b/unlabelled"].startswith("cls is not a label")
    assert why[f"{d / 'part-1.tar'}:a/x1"].startswith("duplicate key")
    (d / "classes.txt").write_text("kitten\npuppy\n")
    assert open_dataset(str(d)).classes == ["kitten", "puppy"]  # the index beside the shards wins
    (d / "classes.txt").write_text("only-one\n")
    with pytest.raises(ValueError, match="names 1 classes but the shards hold label 1"):
        open_dataset(str(d))
    (d / "classes.txt").unlink()
    with pytest.raises(ValueError, match="could not be used"):
        open_dataset(str(d.parent / "foreign"), on_error="raise")


def test_pack_records_why_a_file_was_left_out_in_words(tmp_path, folder):
    (folder / "class1" / "notes.jpg").write_bytes(b"not an image")  # only decoding can tell
    index = pack(open_dataset(str(folder), in_memory=False), tmp_path / "sh", 30)
    assert index["samples"] == 30
    written = json.loads((tmp_path / "sh" / "dataset.json").read_text())["skipped"]
    bad = str(folder / "class1" / "notes.jpg")
    assert written == [[bad, f"cannot read image {bad}: not a recognised image format (PNG, JPEG, WebP, GIF, BMP, "
                             "TIFF, ...)"]]  # not "<_io.BytesIO object at 0x...>"


def test_truncated_shard_keeps_what_it_can_and_says_so(tmp_path, folder):
    pack(open_dataset(str(folder), in_memory=False), tmp_path / "sh", 30)
    f = tmp_path / "sh" / "shard-000000.tar"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2 + 100])
    src = open_dataset(str(tmp_path / "sh"))
    assert 0 < len(src) < 30 and any("unreadable tar" in why for _, why in src.skipped)


def test_split_layouts_and_patterns(tmp_path, make_folder):
    split = tmp_path / "split"
    make_folder(split / "train", per_class=4)
    make_folder(split / "val", per_class=2, seed=1)
    assert main(["data", "pack", str(split), str(tmp_path / "sd"), "--shard-size", "5"]) == 0
    assert has_test_split(str(tmp_path / "sd"))
    assert len(open_dataset(str(tmp_path / "sd"))) == 12 and len(open_dataset(str(tmp_path / "sd"), "test")) == 6
    # one directory, the split in the shard names (the hub's imagenet-train-0000.tar / imagenet-validation-00.tar)
    flat = tmp_path / "named"
    flat.mkdir()
    for f in (tmp_path / "sd" / "train").glob("*.tar"):
        f.rename(flat / f"set-train-{f.name[-8:]}")
    for f in (tmp_path / "sd" / "test").glob("*.tar"):
        f.rename(flat / f"set-validation-{f.name[-8:]}")
    assert len(open_dataset(str(flat))) == 12 and len(open_dataset(str(flat), "test")) == 6
    pattern = str(flat / "set-train-{0000..0002}.tar")
    assert len(open_dataset(pattern)) == 12 and not has_test_split(pattern)
    assert len(open_dataset(str(flat / "set-train-000[01].tar"))) == 10
    with pytest.raises(FileNotFoundError, match="no shard file matches .*set-train-0003.tar"):
        open_dataset(str(flat / "set-train-{0000..0003}.tar"))
    with pytest.raises(ValueError, match="has no test split"):
        open_dataset(pattern, "test")


def test_index_is_built_once_and_again_when_a_shard_changes(tmp_path, folder, monkeypatch):
    pack(open_dataset(str(folder), in_memory=False), tmp_path / "sh", 10)
    calls = []
    real = shard_mod._scan_shard
    monkeypatch.setattr(shard_mod, "_scan_shard", lambda *a: calls.append(a[0]) or real(*a))
    first = open_dataset(str(tmp_path / "sh"))
    assert len(calls) == 3 and list((tmp_path / "cache" / "vitlab" / "shards").glob("sh-*.npz"))
    again = open_dataset(str(tmp_path / "sh"))
    assert len(calls) == 3 and list(again.paths) == list(first.paths)
    shard = tmp_path / "sh" / "shard-000001.tar"
    with tarfile.open(shard, "a") as t:  # one more sample at the end of a shard
        data = _png(7)
        for name, payload in (("extra.png", data), ("extra.cls", b"2")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
    grown = open_dataset(str(tmp_path / "sh"))
    assert len(calls) == 6 and len(grown) == 31 and "extra" in list(grown.paths)


def test_held_out_split_is_saved_by_sample_key(tmp_path, folder):
    pack(open_dataset(str(folder), in_memory=False), tmp_path / "sh", 8)
    run = open_run_data(str(tmp_path / "sh"), tmp_path / "run", 0.2, seed=0)
    saved = json.loads((tmp_path / "run" / "split.json").read_text())
    assert run.held_out and sorted(saved["test_files"]) == sorted(run.test.paths)
    assert all(k.startswith("class") and "." not in k for k in saved["test_files"])
    back, _ = open_heldout(tmp_path / "run")
    assert list(back.paths) == list(run.test.paths)
    assert [back.read_bytes(i) for i in range(len(back))] == [run.test.read_bytes(i) for i in range(len(back))]


# ------------------------------------------------------------------------------------------ the partition
SHARDS = np.repeat(np.arange(7), [10, 13, 9, 11, 12, 8, 14])  # 77 rows in 7 shards of unequal sizes


def _schedules(world, workers, accum, batch=12, epochs=2, buffer=5, seed=0):
    spe = len(SHARDS) // batch
    return [ShardSchedule(SHARDS, seed, spe, spe * epochs, batch, batch // (world * accum), accum, world, r, workers,
                          buffer) for r in range(world)]


@pytest.mark.parametrize("world,workers,accum", [(1, 1, 1), (2, 2, 1), (2, 3, 2), (1, 4, 3), (3, 1, 2), (4, 2, 1)])
def test_each_epoch_reads_every_sample_once_over_processes_and_workers(world, workers, accum):
    scheds = _schedules(world, workers, accum)
    per_epoch = {0: [], 1: []}
    for s in scheds:
        for mb in s.iterate(0):
            assert len(mb.rows) == s.micro
            per_epoch[mb.epoch] += mb.rows.tolist()
    left = len(SHARDS) - 6 * 12  # the documented remainder: n - steps_per_epoch x batch_size
    for rows in per_epoch.values():
        assert len(rows) == len(set(rows)) == len(SHARDS) - left
    assert set(per_epoch[0]) != set(per_epoch[1]) or per_epoch[0] != per_epoch[1]  # epochs differ


def test_a_reader_reads_one_contiguous_stretch_of_the_shuffled_shards():
    s = _schedules(2, 2, 1, buffer=1)[1]  # buffer 1: the reading order is the stream order itself
    order = s.shard_order(0)
    stream = np.concatenate([np.flatnonzero(SHARDS == k) for k in order])
    lengths = [len(s.reader_rows(0, g, order)) for g in range(4)]
    assert sum(lengths) == 72 and max(lengths) - min(lengths) <= s.micro
    begin = 0
    for g in range(4):
        rows = s.reader_rows(0, g, order)
        assert rows.tolist() == stream[begin : begin + len(rows)].tolist()
        begin += len(rows)
    # micro-batch q of a process goes to its worker q mod workers: consecutive micro-batches alternate readers
    readers = [s._place(step, 1)[0] for step in range(6)]
    assert readers == [2, 3, 2, 3, 2, 3]


def test_each_dataloader_worker_reads_its_own_stretch_in_order(tmp_path, folder, monkeypatch):
    from vitlab.data.pipeline import CropSpec, StreamingBatches
    from vitlab.data.sources.shards import ShardSource

    pack(open_dataset(str(folder), in_memory=False), tmp_path / "sh", 4)
    src = open_dataset(str(tmp_path / "sh"))
    log = tmp_path / "reads.txt"
    real = ShardSource.read_bytes

    def logged(self, i):  # runs in the forked workers: one line per read, with the reading process
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {self.paths[i]}\n")
        return real(self, i)

    monkeypatch.setattr(ShardSource, "read_bytes", logged)
    sched = ShardSchedule(src.shard, 0, 3, 6, 8, 4, 1, 1, 0, 2, buffer=3)  # 30 samples, 2 workers, 2 epochs
    batches = StreamingBatches(src, sched, 0, CropSpec((8, 8)), 0, "skip", 2, torch.device("cpu"))
    for step in range(6):
        batches.get(step, 0)
    batches.close()
    by_pid: dict[str, list[str]] = {}
    for line in log.read_text().splitlines():
        pid, key = line.split()
        by_pid.setdefault(pid, []).append(key)
    want = {g: [src.paths[int(r)] for e in (0, 1) for r in sched.reader_rows(e, g)] for g in (0, 1)}
    assert sorted(by_pid.values()) == sorted(want.values())  # each worker: its stretch, in reading order


def test_the_order_is_a_function_of_the_numbers_and_resume_continues_it():
    a, b = _schedules(2, 2, 2)[1], _schedules(2, 2, 2)[1]
    full = [(m.step, m.k, m.rows.tolist()) for m in a.iterate(0)]
    assert full == [(m.step, m.k, m.rows.tolist()) for m in b.iterate(0)]
    tail = [(m.step, m.k, m.rows.tolist()) for m in b.iterate(4)]  # a resume mid-epoch (epoch 0 has 6 steps)
    assert tail == full[-len(tail):] and tail[0][0] == 4
    other = [(m.step, m.k, m.rows.tolist()) for m in _schedules(2, 2, 2, seed=1)[1].iterate(0)]
    assert other != full
    assert [a.reader_rows(e, 2).tolist() for e in (0, 1)] != [a.reader_rows(0, 2).tolist()] * 2  # epochs differ


def test_buffer_shuffle_stays_within_its_window():
    items = np.arange(1000)
    out = buffer_shuffle(items, 32, seed=3)
    assert sorted(out.tolist()) == items.tolist() and out.tolist() != items.tolist()
    assert all(x <= t + 32 for t, x in enumerate(out.tolist()))  # item t+32 cannot come out before position t
    assert buffer_shuffle(items, 1, seed=3).tolist() == items.tolist()
    assert buffer_shuffle(items, 32, seed=3).tolist() == out.tolist()


def test_training_schedule_picks_by_source_and_setting(tmp_path, folder):
    pack(open_dataset(str(folder), in_memory=False), tmp_path / "sh", 8)
    shards, lazy = open_dataset(str(tmp_path / "sh")), open_dataset(str(folder), in_memory=False)
    args = (0, 2, 4, 12, 12, 1, 1, 0, 2)
    assert isinstance(training_schedule("auto", shards, *args), ShardSchedule)
    assert isinstance(training_schedule("auto", shards.subset(torch.arange(25)), *args), ShardSchedule)
    assert not isinstance(training_schedule("global", shards, *args), ShardSchedule)
    assert not isinstance(training_schedule("auto", lazy, *args), ShardSchedule)
    with pytest.raises(ValueError, match="data.shard_order=shards needs tar shards"):
        training_schedule("shards", lazy, *args)


def test_command_line_and_config_errors_name_the_fix(tmp_path, folder, capsys):
    assert main(["data", "pack", str(folder)]) == 2
    assert "usage: vitlab data pack SRC OUT" in capsys.readouterr().err
    assert main(["data", "pack", str(folder), str(tmp_path / "o")]) == 2
    assert "needs --shard-size" in capsys.readouterr().err
    assert main(["data", str(folder), "extra"]) == 2
    from vitlab.train import load_config

    for bad, msg in (("data.shard_order=random", "data.shard_order"), ("data.shuffle_buffer=0", "data.shuffle_buffer")):
        with pytest.raises(ValueError, match=msg):
            load_config(None, [bad]).validate()
