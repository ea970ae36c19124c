"""``python -m converters`` is the same command as ``python -m converters.export``."""

from converters.export import main
from pipeline.cli_support import run_cli

if __name__ == "__main__":
    raise SystemExit(run_cli(main))
