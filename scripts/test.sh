#!/usr/bin/env bash
# The test command: set up everything a fresh machine needs, then run the linter, the Java core
# tests (tox env "java") and the Python test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test

echo "== lint (ruff)"
.venv/bin/ruff check .

echo "== Java core (tox -e java)"
.venv/bin/tox -q -e java

echo "== Python tests (pytest)"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure here." >&2
  exit 1
fi
exit "$rc"
