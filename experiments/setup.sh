#!/usr/bin/env bash
# One-time (and idempotent) set-up: a virtualenv in .venv with the package and its dev extra at
# the tested versions (constraints.txt),
# and, where we are root, Debian's Fashion-MNIST (the default data set for CPU runs).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null
  else
    echo "note: Fashion-MNIST will be downloaded on first use" \
      "(or: sudo apt-get install dataset-fashion-mnist)" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# The tested lock (constraints.txt) pins every package to the versions the tests and the shipped
# results used; DEGRADATION_UNLOCKED=1 installs the newest versions pyproject.toml allows instead.
lock=(-c constraints.txt)
[ "${DEGRADATION_UNLOCKED:-0}" = 1 ] && lock=()
.venv/bin/python -m pip install -q "${lock[@]}" -e ".[dev]"
echo "set-up done: .venv is ready" >&2
