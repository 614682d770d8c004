#!/usr/bin/env bash
# Run the simulated demo campus: a private mosquitto, simulated I/O modules and cameras,
# the gateway with config/demo.toml and the center console. Ctrl-C stops it all.
# Extra arguments go to `campus-sim campus`, e.g. --duration 30 --events-jsonl events.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/campus-sim campus "$@"
