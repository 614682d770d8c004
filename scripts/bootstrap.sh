#!/usr/bin/env bash
# Shared set-up for scripts/demo.sh and scripts/test.sh: Debian's mosquitto (and
# Chromium for the bench page's browser test, systemd for systemd-analyze) and a
# virtualenv in .venv with the project installed (editable) and its pinned deps.
# Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian packages, each only when missing: mosquitto (the demo's and the tests' broker);
# mosquitto-clients and openssl for the shell center of docs/center-protocol.md;
# chromium, chromium-driver and a CJK font for the bench page's browser test;
# faketime for the clock-step test.
missing=()
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    missing+=(mosquitto)
fi
command -v mosquitto_rr >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
dpkg -s fonts-wqy-zenhei >/dev/null 2>&1 || missing+=(fonts-wqy-zenhei)
# systemd-analyze judges the installed unit (tests/ops/test_install.py); the package
# is only installed, never started (a container runs without it as PID 1).
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# faketime (with libfaketime) steps a daemon's wall clock in the clock-step tests
# (tests/system/test_wall_clock_steps.py, tests/delivery/test_clock_step.py).
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
dpkg -s libfaketime >/dev/null 2>&1 || missing+=(libfaketime)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bootstrap: installing Debian's ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv" >&2
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    echo "bootstrap: installing campus-gateway and its pinned dependencies" >&2
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".[dev]"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
