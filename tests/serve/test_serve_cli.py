"""`vitlab serve` on the command line: safe defaults, and a clear message without the serve extra."""
from __future__ import annotations

import sys

from vitlab.cli import main, parse_args


def test_serve_binds_localhost_by_default():
    args = parse_args(["serve", "runs/x"])
    assert (args.ckpt, args.host, args.port, args.checkpoint) == ("runs/x", "127.0.0.1", 8000, None)
    args = parse_args(["serve", "runs/x", "--host", "0.0.0.0", "--port", "9000", "--checkpoint", "best"])
    assert (args.host, args.port, args.checkpoint) == ("0.0.0.0", 9000, "best")


def test_serve_without_the_extra_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    assert main(["serve", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'vitlab[serve]'" in err and "uvicorn" in err
