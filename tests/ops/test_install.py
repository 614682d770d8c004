"""``scripts/install.sh`` into a temporary root: the tree, the unit's verdicts, uninstall.

One install (pip fetches the pinned dependencies: this test takes minutes) into
``DESTDIR``; the virtualenv is built in place there, so its ``campus-gateway``
runs. ``systemd-analyze`` (Debian's ``systemd`` package; scripts/bootstrap.sh
installs it without starting it) judges the installed unit with ``--root``; the
host's own unit directory is copied into the root so ``verify`` finds the
targets the unit names.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.runtime.version import gateway_version
from tests.helpers import REPO_ROOT
from tests.tls_support import make_pki

pytestmark = pytest.mark.timeout(900)

UNIT = "etc/systemd/system/campus-gateway.service"
HOST_UNITS = Path("/usr/lib/systemd/system")


def _install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DESTDIR": str(root)}
    return subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "install.sh"), *args],
        capture_output=True, text=True, check=False, env=env, timeout=800,
    )  # fmt: skip


def _analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args, f"--root={root}", "campus-gateway.service"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    first = _install(root)
    assert first.returncode == 0, first.stderr[-3000:]
    again = _install(root)  # idempotent: a second run changes nothing and succeeds
    assert again.returncode == 0, again.stderr[-3000:]
    assert "kept the existing /etc/campus-gateway/gateway.toml" in again.stderr
    (root / "first.log").write_text(first.stderr)
    return root


def test_the_tree_and_the_program_run_from_their_final_paths(installed: Path) -> None:
    root = installed
    exe = root / "opt/campus-gateway/bin/campus-gateway"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"campus-gateway {gateway_version()}"
    unit = (root / UNIT).read_text()
    assert (
        "ExecStart=/opt/campus-gateway/bin/campus-gateway run /etc/campus-gateway/gateway.toml"
        in unit
    )
    assert not re.search(r"@[A-Z]+@", unit)  # every placeholder filled
    for tty in ("ttyS", "ttyUSB", "ttyACM", "ttyAMA"):
        assert f"DeviceAllow=char-{tty} rw" in unit
    secrets = root / "etc/campus-gateway/secrets"
    assert secrets.is_dir() and secrets.stat().st_mode & 0o777 == 0o750
    assert (root / "var/lib/campus-gateway").is_dir()
    assert (root / "opt/campus-gateway/share/doc/campus-gateway/README.md").is_file()


def test_the_install_ran_check_config_and_said_what_is_missing(installed: Path) -> None:
    log = (installed / "first.log").read_text()
    conf = installed / "etc/campus-gateway/gateway.toml"
    assert f"{conf}:18: broker.password_file: {conf.parent}/secrets/broker.password" in log
    assert "NOT READY" in log
    exe = installed / "opt/campus-gateway/bin/campus-gateway"
    secrets = conf.parent / "secrets"
    (secrets / "broker.password").write_text("a-real-secret-value\n")
    (secrets / "center.key").write_text("5e" * 32 + "\n")  # openssl rand -hex 32
    shutil.copy(make_pki(installed / "pki")["ca"], secrets / "center-ca.pem")
    ok = subprocess.run([exe, "check-config", conf], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr


NO_ANALYZE = "systemd-analyze absent (Debian package systemd; scripts/bootstrap.sh)"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason=NO_ANALYZE)
def test_systemd_analyze_verify_is_clean_and_exposure_below_1_5(installed: Path) -> None:
    if not HOST_UNITS.is_dir():
        pytest.skip(f"{HOST_UNITS} absent: verify needs systemd's own units")
    units = installed / "usr/lib/systemd/system"
    if not units.exists():
        shutil.copytree(HOST_UNITS, units, symlinks=True)
    verify = _analyze(installed, "verify")
    assert verify.returncode == 0 and verify.stdout + verify.stderr == "", verify.stderr
    security = _analyze(installed, "security", "--offline=true", "--no-pager")
    match = re.search(
        r"Overall exposure level for campus-gateway\.service: (\d+\.\d)", security.stdout
    )
    assert match, security.stdout + security.stderr
    assert float(match.group(1)) < 1.5, security.stdout


def test_uninstall_keeps_config_and_data_purge_removes_them(
    installed: Path, tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(installed / "etc", root / "etc", symlinks=True)
    shutil.copytree(installed / "var", root / "var", symlinks=True)
    (root / "opt/campus-gateway/bin").mkdir(parents=True)
    out = _install(root, "--uninstall")
    assert out.returncode == 0, out.stderr
    assert not (root / UNIT).exists() and not (root / "opt/campus-gateway").exists()
    assert (root / "etc/campus-gateway/gateway.toml").is_file()
    assert (root / "var/lib/campus-gateway").is_dir()
    assert _install(root, "--purge").returncode == 0
    assert (
        not (root / "etc/campus-gateway").exists()
        and not (root / "var/lib/campus-gateway").exists()
    )
