"""``python -m results``: points at the two commands of this package."""

from __future__ import annotations

import sys

USAGE = """usage:
  python -m results.collector --db sqlite:///runs.db --port 8765 [--token T] [--host 127.0.0.1]
      the HTTP collector: POST /api/v1/results, GET /api/v1/runs, GET /api/v1/runs/{run_id}, dashboard at /
  python -m results.report --db sqlite:///runs.db --out report.html [--run-set NAME]
      a self-contained HTML report (tables and plots) for a set of stored runs
"""

if __name__ == "__main__":
    print(USAGE, end="", file=sys.stdout if "-h" in sys.argv or "--help" in sys.argv else sys.stderr)
    raise SystemExit(0 if "-h" in sys.argv or "--help" in sys.argv else 2)
