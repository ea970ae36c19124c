"""The exception tree and the CLI wrapper: one readable line, traceback only with --debug."""

from __future__ import annotations

import pytest

from pipeline.cli_support import run_cli
from pipeline.errors import ConfigError, InternalError, ModelLoadError, ToolError, UserError


def test_message_ends_with_next_step_and_keeps_facts() -> None:
    err = ModelLoadError("cannot read model.pt", next_step="Check the path", path="model.pt")
    assert str(err) == "cannot read model.pt. Check the path"
    assert err.facts == {"path": "model.pt"}
    assert isinstance(err, UserError) and isinstance(err, ToolError)


def test_config_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        raise ConfigError("clusters must be 2-256, got 300")


def test_internal_error_says_it_is_a_bug() -> None:
    assert "bug" in str(InternalError("index out of range"))


def _failing(argv):
    raise ModelLoadError("cannot read x.pt", next_step="Check the path.")


def test_run_cli_prints_one_line_and_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(_failing, []) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: cannot read x.pt. Check the path."
    assert "Traceback" not in err


def test_run_cli_debug_reraises() -> None:
    with pytest.raises(ModelLoadError):
        run_cli(_failing, ["--debug"])


def test_run_cli_unexpected_exception_is_reported_as_bug(capsys: pytest.CaptureFixture[str]) -> None:
    def boom(argv):
        raise KeyError("x")

    assert run_cli(boom, []) == InternalError.exit_code
    assert "bug" in capsys.readouterr().err
