#!/usr/bin/env bash
# Run the whole test suite (real mosquitto, real simulators, real captures where present).
# Extra arguments go to pytest, e.g. scripts/test.sh -k panic
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"
