#!/usr/bin/env bash
# One-time (and idempotent) set-up: a virtualenv in .venv with the package and its dev extra,
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
.venv/bin/python -m pip install -q -e ".[dev]"
echo "set-up done: .venv is ready" >&2
