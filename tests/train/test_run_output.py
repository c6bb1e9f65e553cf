"""What a run prints: without a progress bar, a line every train.log_every_steps (step, loss, lr, img/s, ETA)."""
import re

from vitlab.train import load_config, train
from vitlab.train.runlog import clock

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
