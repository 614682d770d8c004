"""``[dc09]`` and ``[[panels]]``: strict, cross-checked, keys from files; every error
names the file, the line, the field and the panel's account."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.root import load_config
from gateway.errors import ConfigError
from tests.helpers import REPO_ROOT, SIGNED_COMMANDS_TOML, line_of

SITE = (
    SIGNED_COMMANDS_TOML
    + """
[site]
id = "dc09-school"
gateway = "gw1"

[[areas]]
id = "TEACH"
name = "教学行政区"

[dc09]
listen = [{ protocol = "tcp", port = 15030 }, { protocol = "udp", port = 15030 }]

[[panels]]
id = "east"
name = "东教学楼报警主机"
account = "1234"
key_file = "keys/east.key"
supervision_s = 180
timestamp_window = { past_s = 30, future_s = 60 }

[[panels.partitions]]
number = 1
area = "TEACH"

[[panels.zones]]
number = 3
id = "E03"
name = "东门红外"

[[panels.zones]]
number = 4
name = "东门窗磁"

[[panels]]
id = "west"
account = "ABCD"
supervision_s = 90
"""
)


def _write(tmp_path: Path, text: str = SITE, key: str = "0123456789ABCDEF") -> Path:
    (tmp_path / "keys").mkdir(exist_ok=True)
    (tmp_path / "keys" / "east.key").write_text(key + "\n", encoding="utf-8")
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_panels_load_with_their_keys_and_windows(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path))
    east, west = cfg.panels
    assert east.key_file == tmp_path / "keys" / "east.key"
    assert east.key() == b"0123456789ABCDEF" and west.key() is None
    assert (east.timestamp_window.past_s, east.timestamp_window.future_s) == (30, 60)
    assert (west.timestamp_window.past_s, west.timestamp_window.future_s) == (20, 40)
    assert east.zone_id(3) == "E03" and east.zone_id(4) == "east.z004"
    assert [(a.protocol, a.host, a.port) for a in cfg.dc09.listen] == [
        ("tcp", "0.0.0.0", 15030), ("udp", "0.0.0.0", 15030)
    ]  # fmt: skip


def test_a_hex_key_is_read_as_hex(tmp_path: Path) -> None:
    text = SITE.replace(
        'key_file = "keys/east.key"', 'key_file = "keys/east.key"\nkey_format = "hex"'
    )
    cfg = load_config(_write(tmp_path, text, key="00112233445566778899AABBCCDDEEFF"))
    assert cfg.panels[0].key() == bytes.fromhex("00112233445566778899AABBCCDDEEFF")


@pytest.mark.parametrize(
    ("old", "new", "field", "needle"),
    [
        ('account = "ABCD"', 'account = "1234"', "panels.1.account", "also used by 'east'"),
        ('account = "ABCD"', 'account = "12-34"', "panels.1.account", "account 12-34"),
        ('area = "TEACH"', 'area = "GYM"', "panels.0.partitions.0.area", "no area 'GYM'"),
        ("number = 4", "number = 3", "panels.0.zones.1", "3 is given twice"),
        ("supervision_s = 90", "supervision_s = 0", "panels.1.supervision_s", "greater than 0"),
        ("supervision_s = 90", "superviison_s = 90", "panels.1.supervision_s", "'superviison_s'"),
        ('id = "west"', 'id = "east"', "panels.1.id", "is taken"),
    ],
)
def test_panel_errors_name_file_line_field_and_account(
    tmp_path: Path, old: str, new: str, field: str, needle: str
) -> None:
    assert old in SITE
    path = _write(tmp_path, SITE.replace(old, new, 1) if old != 'area = "TEACH"' else SITE.replace(
        'number = 1\narea = "TEACH"', 'number = 1\narea = "GYM"'))  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert error.field is not None and error.field.startswith(field), error
    assert needle in str(error) and error.file == str(path)
    account = "1234" if field.startswith("panels.0") else ("1234" if "1234" in new else "ABCD")
    assert f"account {account}" in str(error) or "account 12-34" in str(error), str(error)
    assert error.line is not None


def test_a_bad_key_file_is_a_config_error_naming_the_panel(tmp_path: Path) -> None:
    path = _write(tmp_path, key="00112233445566778899AABBCCDDEEFF")  # hex or ascii? say which
    east = load_config(path).panels[0]  # secrets are read when used, as every secret
    with pytest.raises(ConfigError) as caught:
        east.key()
    assert caught.value.field == "key_file" and caught.value.file == str(east.key_file)
    assert "account 1234" in str(caught.value) and 'key_format = "hex"' in str(caught.value)
    assert "00112233" not in str(caught.value)  # the key is never shown
    _write(tmp_path, key="too short")
    with pytest.raises(ConfigError, match="16, 24 or 32 printable ASCII"):
        east.key()
    (tmp_path / "keys" / "east.key").unlink()
    with pytest.raises(ConfigError, match="cannot read the AES key of panel 'east'"):
        east.key()


def test_check_config_reads_the_panels_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, key="short")
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", str(path)],
        capture_output=True, text=True, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "account 1234" in done.stderr, done.stderr
    _write(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", str(path)],
        capture_output=True, text=True, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "2 panels" in done.stdout, done.stderr


def test_panels_need_somewhere_to_listen(tmp_path: Path) -> None:
    path = _write(tmp_path, SITE.replace("[dc09]\nlisten = [", "[dc09]\nlisten_off = ["))
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(path)
    cut = SITE.split("[dc09]")[0] + "[[panels]]" + SITE.split("[[panels]]", 1)[1]
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, cut))
    assert caught.value.field == "dc09.listen"


def test_a_zone_line_is_found_under_its_panel(tmp_path: Path) -> None:
    text = SITE.replace(
        'number = 4\nname = "东门窗磁"', 'number = 4\nid = "E03"\nname = "东门窗磁"'
    )
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.field == "panels.0.zones.1.id"
    assert caught.value.line == line_of(path, 'id = "E03"', occurrence=2)
