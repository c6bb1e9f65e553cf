"""`vitlab` prints a user's mistake as one line (exit 2) but lets a genuine bug show its traceback."""
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
