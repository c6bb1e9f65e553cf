import pytest

from vitlab.cli import parse_args


def test_train_overrides_may_follow_options():
    args = parse_args(["train", "--out", "run", "optim.lr=1e-3", "--no-progress", "data.batch_size=64"])
    assert args.overrides == ["optim.lr=1e-3", "data.batch_size=64"] and args.no_progress


def test_unknown_options_are_still_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(["train", "--out", "run", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["info", "ckpt", "x=1"])  # only train takes overrides
