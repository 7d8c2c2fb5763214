#!/usr/bin/env bash
# One command installs everything into ./.venv (Python 3.11+): the bridge, its test tools and linters,
# at the exact versions of requirements.lock (how to regenerate it: README, "Development").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# --require-hashes: every file must match the hash the lock recorded (pip itself is locked too).
.venv/bin/python -m pip install -q --require-hashes -r requirements.lock
.venv/bin/python -m pip install -q --no-deps -e .
