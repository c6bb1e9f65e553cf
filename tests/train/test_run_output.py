"""What a run prints and writes for people: without a progress bar, a line every train.log_every_steps (step, loss,
lr, img/s, ETA); the model line's origin of each choice; final.json's figures, rounded."""
import json
import re

import pytest

from vitlab.train import load_config, train
from vitlab.train.runlog import clock
from vitlab.utils.figures import rounded

LINE = re.compile(r"^step (\d+)/6 epoch \d+\.\d\d: loss \d+\.\d{4} lr \d\.\d\de-\d\d grad norm \S+ \d+ img/s"
                  r"(?: ETA (\d+:\d\d))?$", re.M)


def test_no_progress_prints_the_training_records(tmp_path, capsys, tiny):
    train(load_config(None, tiny + ["schedule.steps=6", "train.log_every_steps=2"]), tmp_path / "run", progress=False)
    lines = LINE.findall(capsys.readouterr().out)
    assert [int(step) for step, _ in lines] == [2, 4, 6]
    assert all(eta for _, eta in lines)  # known from the second step on (the first may be compiling)


def test_a_progress_bar_shows_them_instead(tmp_path, capsys, tiny):
    train(load_config(None, tiny + ["schedule.steps=6", "train.log_every_steps=2"]), tmp_path / "run", progress=True)
    out = capsys.readouterr()
    assert not LINE.search(out.out) and "loss=" in out.err  # the bar's postfix (tqdm writes to stderr)


def test_clock_reads_like_tqdm():
    assert (clock(0), clock(59.6), clock(252), clock(3725)) == ("0:00", "1:00", "4:12", "1:02:05")


def test_final_json_holds_rounded_figures(tmp_path, tiny):
    """Per-class accuracies of 1/3 or 0.404 are 33.33333 and 40.4 in the file, not 33.33333333333333 or
    40.400000000000006; every float has at most 7 significant digits."""
    train(load_config(None, tiny + ["schedule.steps=2"]), tmp_path / "run", progress=False)
    text = (tmp_path / "run" / "final.json").read_text()
    floats = re.findall(r"(?<![\w.])-?\d+\.\d+(?:e-?\d+)?", text)
    assert floats and all(len(f.split("e")[0].lstrip("-0.").replace(".", "")) <= 7 for f in floats), text
    assert json.loads(text)["train_time_s"] > 0


def test_rounding_keeps_every_figure_meaning():
    assert rounded({"a": [100 * 0.404, 100 * 2 / 3], "n": 359, "b": (1e-9 / 3, True)}) == \
        {"a": [40.4, 66.66667], "n": 359, "b": [3.333333e-10, True]}
    assert rounded(100 * 999_999 / 1_000_000) == 99.9999  # one image in a million still shows


@pytest.mark.parametrize("key", ["data.image_size", "model.img_size"])
def test_the_model_line_names_the_key_that_set_the_image_size(tmp_path, make_folder, key):
    """Data read from disk (a folder here, shards and tables alike) is cropped to the size one of two keys set."""
    from vitlab.train.setup import build_run_model, load_data

    folder = make_folder(tmp_path / "photos", per_class=4)
    cfg = load_config(None, [f"data.dataset={folder}", "data.in_memory=false", "model.name=vit_mnist",
                             "model.patch_size=4", f"{key}=16"])
    data = load_data(cfg, tmp_path / "run", write=False)
    assert build_run_model(cfg, data).cfg.img_size == (16, 16)
    assert f"img_size=16x16 ({key})" in data.notes[-1]
