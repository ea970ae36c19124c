#!/usr/bin/env bash
# Set up a fresh machine for this project: a Python 3.11 virtual environment in .venv with the
# project installed (editable). With --test, also the system packages the test suite needs
# (Debian: adb, a JDK, junit4, chromium, postgresql) and the dev extra.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    *) echo "setup.sh: unknown argument '$arg' (accepted: --test)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3.11}
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "setup.sh: $PY not found. Install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv) and run again." >&2
  exit 2
fi

if [ "$want_test" = 1 ]; then
  pkgs=()
  command -v adb >/dev/null 2>&1 || pkgs+=(adb)
  command -v javac >/dev/null 2>&1 || pkgs+=(default-jdk-headless)
  [ -f /usr/share/java/junit4.jar ] || pkgs+=(junit4)
  command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
  command -v pg_ctlcluster >/dev/null 2>&1 || [ -x /usr/lib/postgresql/15/bin/postgres ] || pkgs+=(postgresql)
  if [ "${#pkgs[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "setup.sh: installing Debian packages: ${pkgs[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
fi

# torch 2.14.1 with its CUDA libraries and the rest take about 7.5 GB in .venv; stop early with a
# clear message rather than leave a half-installed environment behind on a full disk.
NEED_GB=9
if [ ! -d .venv/lib/python3.11/site-packages/torch ]; then
  avail_kb=$(df -Pk . | awk 'NR==2 {print $4}')
  if [ -n "$avail_kb" ] && [ "$avail_kb" -lt $((NEED_GB * 1024 * 1024)) ]; then
    echo "setup.sh: only $((avail_kb / 1024 / 1024)) GB free on $(df -P . | awk 'NR==2 {print $6}'); the environment needs about $NEED_GB GB. Free some space (old clones, /tmp) and run again." >&2
    exit 2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch==2.14.1 and torchvision==0.29.1 (pinned in pyproject.toml) lie on this machine's disk,
# so this does not download several GB of CUDA wheels.
.venv/bin/python -m pip install -q --upgrade pip
if [ "$want_test" = 1 ]; then
  .venv/bin/python -m pip install -q -e ".[dev]"
else
  .venv/bin/python -m pip install -q -e .
fi
echo "setup.sh: ready (.venv/bin/python)"
