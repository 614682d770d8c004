"""``[[cameras]]`` and ``[[linkage]]``: strict, cross-checked, secrets from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.root import load_config
from gateway.errors import ConfigError
from tests.helpers import REPO_ROOT

DEMO = REPO_ROOT / "config" / "demo.toml"

CAMERAS = """
[[cameras]]
id = "gate-cam"
name = "南门摄像机"
host = "127.0.0.1"
port = 18080
password_file = "secrets/gate-cam.password"
snapshot = { auth = "basic", max_width_px = 960 }

[[cameras]]
id = "hall-cam"
host = "127.0.0.1"
area = "TEACH"

[[linkage]]
zone = "Z01"
cameras = ["gate-cam", "hall-cam"]
"""


def _config(tmp_path: Path, extra: str) -> Path:
    """The demo site without its own cameras (nor the linkage and patrol after them) + ``extra``."""
    site, cameras, _ = DEMO.read_text(encoding="utf-8").partition("\n[[cameras]]\n")
    assert cameras, "config/demo.toml has no [[cameras]] to cut off"
    path = tmp_path / "site.toml"
    path.write_text(site + "\n" + extra, encoding="utf-8")
    return path


def test_cameras_and_linkage_load_with_the_password_file_resolved(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "gate-cam.password").write_text("pw\n", encoding="utf-8")
    cfg = load_config(_config(tmp_path, CAMERAS))
    gate, hall = cfg.cameras
    assert gate.password_file == tmp_path / "secrets" / "gate-cam.password"
    assert gate.password() == "pw" and hall.password() == ""
    assert (gate.snapshot.auth, gate.snapshot.max_width_px) == ("basic", 960)
    assert hall.snapshot.auth == "auto" and hall.subscription_s == 60  # digest, then basic
    assert cfg.linkage[0].cameras == ("gate-cam", "hall-cam")
    assert (gate.area, hall.area) == (None, "TEACH")


@pytest.mark.parametrize(
    ("old", "new", "field", "needle"),
    [
        ('zone = "Z01"', 'zone = "Z99"', "linkage.0.zone", "Z99"),
        ('cameras = ["gate-cam", "hall-cam"]', 'cameras = ["gate-cam", "roof-cam"]',
         "linkage.0.cameras", "roof-cam"),
        ('id = "hall-cam"', 'id = "gate-cam"', "cameras.1.id", None),
        ("port = 18080", "port = 0", "cameras.0.port", "port = 0"),
        ('auth = "basic"', 'auth = "ntlm"', "cameras.0.snapshot.auth", None),
        ('area = "TEACH"', 'area = "ROOF"', "cameras.1.area", 'area = "ROOF"'),
    ],
)  # fmt: skip
def test_bad_camera_config_names_file_field_and_line(
    tmp_path: Path, old: str, new: str, field: str, needle: str | None
) -> None:
    path = _config(tmp_path, CAMERAS.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.field == field
    assert caught.value.file == str(path)
    if needle is not None:
        lines = path.read_text(encoding="utf-8").splitlines()
        assert caught.value.line is not None and needle in lines[caught.value.line - 1]
