"""The center's site key: required unless ``allow_unsigned = true`` is written, and
read exactly as ``hmac_key_encoding`` says (nothing stripped silently)."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.keys import read_key
from gateway.config.root import load_config
from gateway.errors import ConfigError
from tests.helpers import REPO_ROOT, line_of

KEY = bytes(range(40))
FIELD = "commands.hmac_key_file"


@pytest.mark.parametrize(
    ("encoding", "content"),
    [
        ("hex", KEY.hex().encode()),
        ("hex", KEY.hex().encode() + b"\n"),  # openssl rand -hex 32 > center.key
        ("hex", KEY.hex().upper().encode() + b"\n"),
        ("base64", base64.b64encode(KEY)),
        ("base64", base64.b64encode(KEY) + b"\n"),
        ("raw", KEY),
    ],
)
def test_a_key_file_is_read_in_its_encoding(tmp_path: Path, encoding: str, content: bytes) -> None:
    path = tmp_path / "center.key"
    path.write_bytes(content)
    assert read_key(path, encoding, FIELD) == KEY  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("encoding", "content", "message"),
    [
        ("hex", KEY.hex().encode() + b"\n\n", "only hex digits"),
        ("hex", KEY.hex().encode() + b"\r\n", "only hex digits"),
        ("hex", b" " + KEY.hex().encode(), "only hex digits"),
        ("hex", KEY.hex().encode()[:-1], "only hex digits"),  # an odd number of digits
        ("base64", base64.b64encode(KEY) + b" \n", "RFC 4648 base64"),
        ("base64", base64.urlsafe_b64encode(b"\xff" * 40), "RFC 4648 base64"),
        ("base64", b"QUJD\n", "RFC 4648 base64|3 bytes"),
        ("hex", b"00" * 31 + b"\n", "31 bytes"),
        ("raw", b"short\n", "6 bytes"),
    ],
)
def test_a_key_file_not_in_its_encoding_is_refused(
    tmp_path: Path, encoding: str, content: bytes, message: str
) -> None:
    path = tmp_path / "center.key"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        read_key(path, encoding, FIELD)  # type: ignore[arg-type]
    assert info.value.field == FIELD and info.value.file == str(path)


def test_a_raw_key_keeps_every_byte_a_trailing_newline_included(tmp_path: Path) -> None:
    path = tmp_path / "center.key"
    path.write_bytes(KEY + b"\n")
    assert read_key(path, "raw", FIELD) == KEY + b"\n"


SITE = """
[site]
id = "s"
gateway = "g"

[broker]
host = "127.0.0.1"
port = {port}

[outbox]
path = "outbox.sqlite"
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True, text=True, check=False, cwd=REPO_ROOT, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_config_without_a_key_is_refused_naming_the_field(tmp_path: Path, command: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(SITE.format(port=1), encoding="utf-8")
    out = _cli(command, str(path))
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"{path}: {FIELD}: required" in out.stderr
    assert "allow_unsigned = true" in out.stderr


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_key_file_in_the_wrong_encoding_is_refused_naming_config_line_and_field(
    tmp_path: Path, command: str
) -> None:
    path = tmp_path / "gateway.toml"
    text = SITE.format(port=1) + '\n[commands]\nhmac_key_file = "center.key"\n'
    path.write_text(text, encoding="utf-8")
    (tmp_path / "center.key").write_text(base64.b64encode(KEY).decode() + "\n")  # hex expected
    out = _cli(command, str(path))
    assert out.returncode == 2, out.stdout + out.stderr
    line = line_of(path, "hmac_key_file")
    assert f"{path}:{line}: {FIELD}: {tmp_path / 'center.key'}: " in out.stderr, out.stderr
    assert "only hex digits" in out.stderr
    assert base64.b64encode(KEY).decode() not in out.stderr


def test_allow_unsigned_with_a_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    text = SITE.format(port=1) + (
        '\n[commands]\nhmac_key_file = "center.key"\nallow_unsigned = true\n'
    )
    path.write_text(text, encoding="utf-8")
    (tmp_path / "center.key").write_text(KEY.hex())
    out = _cli("check-config", str(path))
    assert out.returncode == 2
    assert "commands.allow_unsigned: allow_unsigned = true with an hmac_key_file" in out.stderr


def test_check_config_passes_allow_unsigned_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(SITE.format(port=1) + "\n[commands]\nallow_unsigned = true\n")
    out = _cli("check-config", str(path))
    assert out.returncode == 0, out.stderr
    assert "allow_unsigned = true: commands and acks are not authenticated" in out.stderr


def test_an_absolute_key_path_is_kept(tmp_path: Path) -> None:
    """A key file named by an absolute path was once dropped at load, which left the
    gateway taking unsigned commands."""
    key = tmp_path / "keys" / "center.key"
    key.parent.mkdir()
    key.write_text(KEY.hex() + "\n")
    path = tmp_path / "gateway.toml"
    path.write_text(SITE.format(port=1) + f'\n[commands]\nhmac_key_file = "{key}"\n')
    cfg = load_config(path)
    assert cfg.commands.hmac_key_file == key
    assert cfg.commands.key() == KEY
