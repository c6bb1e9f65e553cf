"""`vitlab` prints a user's mistake as one line (exit 2) but lets a genuine bug show its traceback."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vitlab import cli
from vitlab.errors import CheckpointError, ConfigError, UnknownOptionError, VitlabError
from vitlab.models import registry


def test_user_error_is_one_clean_line(capsys):
    assert cli.main(["models", "no_such_model*"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitlab models: error: no model matches 'no_such_model*'")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_checkpoint_is_a_user_error(tmp_path, capsys):
    assert cli.main(["info", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("bug", [TypeError("unsupported operand"), KeyError("head.weight"), AttributeError("x")])
def test_a_bug_keeps_its_traceback(monkeypatch, bug):
    def broken(pattern):
        raise bug

    monkeypatch.setattr(registry, "describe_models", broken)
    with pytest.raises(type(bug)):
        cli.main(["models"])


def test_error_types_keep_the_builtin_contracts():
    # callers that caught ValueError / TypeError before vitlab had its own types still catch them
    assert issubclass(ConfigError, ValueError) and issubclass(CheckpointError, ValueError)
    assert issubclass(UnknownOptionError, TypeError) and issubclass(UnknownOptionError, VitlabError)
    with pytest.raises(UnknownOptionError, match="unknown model option"):
        registry.get_config("vit_mnist", no_such_field=1)


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`vitlab models | head -2`: the pipe closes while vitlab writes; it ends as a shell tool does (SIGPIPE's code)."""
    root = Path(__file__).resolve().parents[1]
    p = subprocess.Popen([sys.executable, "-m", "vitlab", "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, PYTHONPATH=str(root / "src")), text=True)
    p.stdout.close()  # before vitlab writes a line: its first write finds no reader
    err = p.stderr.read()
    assert p.wait(timeout=60) == cli.SIGPIPE_EXIT
    assert err == ""


def test_a_broken_pipe_elsewhere_keeps_its_traceback(monkeypatch):
    def broken(pattern):
        raise BrokenPipeError(32, "Broken pipe")  # a worker's pipe, say: stdout is fine

    monkeypatch.setattr(registry, "describe_models", broken)
    with open(os.devnull, "w") as out, pytest.raises(BrokenPipeError):
        monkeypatch.setattr(cli.sys, "stdout", out)
        cli.main(["models"])
