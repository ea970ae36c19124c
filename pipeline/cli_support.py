"""Shared command-line plumbing: one readable line per user error, a traceback only with --debug.

Usage in a ``__main__``::

    def main(argv=None) -> int: ...
    if __name__ == "__main__":
        raise SystemExit(run_cli(main))

``run_cli`` looks for ``--debug`` in ``sys.argv`` itself, so every command accepts it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from pipeline.errors import InternalError, ToolError


def is_interactive() -> bool:
    """True when progress bars should be drawn: a terminal and not CI."""
    if os.environ.get("CI"):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def quiet_native_logs() -> None:
    """Keep TensorFlow/LiteRT's C++ info lines (oneDNN, XNNPACK, op counts) out of a CLI's output."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    quiet_native_logs()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or bool(os.environ.get("PALETTE_DEBUG"))
    if "--debug" in args:
        args.remove("--debug")
    try:
        code = main(args)
        return int(code or 0)
    except ToolError as err:
        if debug:
            raise
        kind = "internal error" if isinstance(err, InternalError) else "error"
        print(f"{kind}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted: stopped by Ctrl-C; results already stored are kept.", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the last line of defence for users
        if debug:
            raise
        print(
            f"internal error: {type(err).__name__}: {err}. This is a bug, please report it "
            "with the command you ran and the output of the same command with --debug.",
            file=sys.stderr,
        )
        return InternalError.exit_code
