"""``check-config`` checks every file a run needs, naming file and field, never the content."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, SIGNED_COMMANDS_TOML, line_of
from tests.tls_support import make_pki

DEMO = REPO_ROOT / "config" / "demo.toml"
SECRET = "s3cret-Pa55-do-not-print-0123456789"  # 35 bytes: a raw HMAC key needs 32


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", str(path)],
        capture_output=True, text=True, check=False, cwd=REPO_ROOT,
    )  # fmt: skip


BASE = """
[site]
id = "s"
gateway = "g"

[broker]
host = "127.0.0.1"
password_file = "broker.password"
username = "gw"

[commands]
hmac_key_file = "center.key"
hmac_key_encoding = "raw"

[[cameras]]
id = "gate-cam"
host = "127.0.0.1"
port = 18080
username = "admin"
password_file = "camera.password"
"""


@pytest.mark.parametrize(
    ("missing", "field", "label"),
    [
        ("broker.password", "broker.password_file", "broker.password_file"),
        ("camera.password", "cameras.0.password_file", "cameras[gate-cam].password_file"),
        ("center.key", "commands.hmac_key_file", "commands.hmac_key_file"),
    ],
)
def test_a_missing_secret_file_is_refused_naming_file_and_field(
    tmp_path: Path, missing: str, field: str, label: str
) -> None:
    for name in ("broker.password", "camera.password", "center.key"):
        if name != missing:
            (tmp_path / name).write_text(SECRET + "\n")
    path = _config(tmp_path, BASE)
    out = _check(path)
    assert out.returncode == 2, out.stdout + out.stderr
    line = line_of(path, field.rsplit(".", 1)[-1] + " = " + f'"{missing}"')
    assert f"{path}:{line}: {label}: {tmp_path / missing}: No such file or directory" in out.stderr
    assert SECRET not in out.stdout + out.stderr


def test_every_file_present_passes(tmp_path: Path) -> None:
    for name in ("broker.password", "camera.password", "center.key"):
        (tmp_path / name).write_text(SECRET + "\n")
    out = _check(_config(tmp_path, BASE))
    assert out.returncode == 0, out.stderr
    assert "1 camera\n" in out.stdout and SECRET not in out.stdout + out.stderr


_WITHOUT_OPENCV = """
import importlib.abc, runpy, sys

class Missing(importlib.abc.MetaPathFinder):  # as where OpenCV is not installed
    def find_spec(self, fullname, path, target=None):
        if fullname.partition(".")[0] == "cv2":
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None

sys.meta_path.insert(0, Missing())
sys.argv = ["campus-gateway", "check-config", sys.argv[1]]
runpy.run_module("gateway.cli", run_name="__main__")
"""


def test_cameras_without_opencv_are_a_warning_that_never_stops_the_start(tmp_path: Path) -> None:
    """The unit runs check-config before every start: a missing OpenCV must not keep
    the alarm path down, only say that every picture will be reported not taken."""
    for name in ("broker.password", "camera.password", "center.key"):
        (tmp_path / name).write_text(SECRET + "\n")
    path = _config(tmp_path, BASE)
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_OPENCV, str(path)],
        capture_output=True, text=True, check=False, cwd=REPO_ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"warning: {path}: cameras are configured but cv2 (OpenCV) is not installed" in (
        out.stderr
    )
    assert "OpenCV" not in _check(path).stderr  # with OpenCV installed: no warning


def test_an_empty_or_unreadable_secret_is_refused(tmp_path: Path) -> None:
    (tmp_path / "broker.password").write_text("")
    (tmp_path / "camera.password").mkdir()
    (tmp_path / "center.key").write_text(SECRET)
    out = _check(_config(tmp_path, BASE))
    assert out.returncode == 2
    assert "broker.password_file: " in out.stderr and "the file is empty" in out.stderr
    assert "cameras[gate-cam].password_file: " in out.stderr
    assert "Is a directory" in out.stderr


def test_tls_files_must_parse(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(f"-----BEGIN CERTIFICATE-----\n{SECRET}\n")
    path = _config(
        tmp_path,
        '[site]\nid = "s"\ngateway = "g"\n\n[broker.tls]\nca_file = "ca.pem"\n'
        + SIGNED_COMMANDS_TOML,
    )
    out = _check(path)
    assert out.returncode == 2
    assert f"{path}:6: broker.tls.ca_file: {tmp_path / 'ca.pem'}: not a PEM CA" in out.stderr
    assert SECRET not in out.stderr


def test_a_client_certificate_with_a_foreign_key_is_refused(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    text = (
        '[site]\nid = "s"\ngateway = "g"\n\n[broker.tls]\n'
        f'ca_file = "{pki["ca"]}"\ncert_file = "{pki["server"]}"\n'
        f'key_file = "{pki["key"].with_name("other-ca.key")}"\n' + SIGNED_COMMANDS_TOML
    )
    out = _check(_config(tmp_path, text))
    assert out.returncode == 2
    assert "broker.tls.cert_file: " in out.stderr and "private key" in out.stderr
    good = text.replace(str(pki["key"].with_name("other-ca.key")), str(pki["key"]))
    ok = _check(_config(tmp_path, good))
    assert ok.returncode == 0, ok.stderr


def _secrets(tmp_path: Path, mode: int = 0o640) -> None:
    for name in ("broker.password", "camera.password", "center.key"):
        (tmp_path / name).write_text(SECRET + "\n")
        (tmp_path / name).chmod(mode)


def test_a_clean_config_gives_no_warning(tmp_path: Path) -> None:
    _secrets(tmp_path)
    out = _check(_config(tmp_path, BASE))
    assert out.returncode == 0 and "warning" not in out.stderr, out.stderr


def test_a_secret_every_user_can_read_is_a_warning_naming_its_line(tmp_path: Path) -> None:
    _secrets(tmp_path)
    (tmp_path / "center.key").chmod(0o644)
    path = _config(tmp_path, BASE)
    out = _check(path)
    assert out.returncode == 0, out.stderr  # the alarm path still starts
    line = line_of(path, 'hmac_key_file = "center.key"')
    assert (
        f"warning: {path}:{line}: commands.hmac_key_file: {tmp_path / 'center.key'} is "
        "readable by every user on the box (mode 0644)"
    ) in out.stderr
    assert out.stderr.count("warning") == 1
    assert SECRET not in out.stdout + out.stderr


@pytest.mark.parametrize("content", [None, ""], ids=["missing", "empty"])
def test_a_bench_password_run_cannot_read_is_a_warning_that_the_page_is_not_served(
    tmp_path: Path, content: str | None
) -> None:
    _secrets(tmp_path)
    if content is not None:
        (tmp_path / "bench.password").write_text(content)
        (tmp_path / "bench.password").chmod(0o640)
    path = _config(tmp_path, BASE + '\n[bench]\npassword_file = "bench.password"\n')
    out = _check(path)
    assert out.returncode == 0, out.stderr
    line = line_of(path, 'password_file = "bench.password"')
    assert f"warning: {path}:{line}: bench.password_file: " in out.stderr
    assert "bench.password_file" in out.stderr and "the bench page will not be served" in (
        out.stderr
    )


def test_a_bench_page_open_to_the_network_without_a_password_is_a_warning(
    tmp_path: Path,
) -> None:
    _secrets(tmp_path)
    for host, warned in [("0.0.0.0", True), ("192.0.2.7", True), ("127.0.0.1", False)]:
        path = _config(tmp_path, BASE + f'\n[bench]\nhost = "{host}"\n')
        out = _check(path)
        assert out.returncode == 0, out.stderr
        assert ("without bench.password_file: anyone who reaches" in out.stderr) is warned


def test_a_secret_its_group_can_write_is_a_warning(tmp_path: Path) -> None:
    _secrets(tmp_path)
    (tmp_path / "broker.password").chmod(0o660)
    out = _check(_config(tmp_path, BASE))
    assert out.returncode == 0, out.stderr
    assert "broker.password is writable by its group (mode 0660)" in out.stderr


def test_a_long_converter_timeout_is_a_warning(tmp_path: Path) -> None:
    _secrets(tmp_path)
    module = (
        '\n[[modules]]\nid = "io"\ntransport = { type = "tcp", host = "127.0.0.1", port = 502 }\n'
        "converter_timeout_ms = 3000\n"
    )
    path = _config(tmp_path, BASE + module)
    out = _check(path)
    assert out.returncode == 0, out.stderr
    line = line_of(path, "converter_timeout_ms = 3000")
    assert f"{path}:{line}: modules.0.converter_timeout_ms: 3000 ms" in out.stderr


def _reader(host: str, key_file: str | None = None) -> str:
    key = f'key_file = "{key_file}"\n' if key_file else ""
    return (
        '\n[[patrol.readers]]\ntype = "network"\nid = "app"\n'
        f'listen = {{ host = "{host}", port = 15040 }}\n{key}'
    )


def test_a_reader_open_to_the_network_without_a_key_is_a_warning(tmp_path: Path) -> None:
    _secrets(tmp_path)
    (tmp_path / "app.key").write_text("ab" * 32 + "\n")
    (tmp_path / "app.key").chmod(0o640)
    for host, key_file, warned in [
        ("0.0.0.0", None, True),
        ("192.0.2.7", None, True),
        ("127.0.0.1", None, False),
        ("0.0.0.0", "app.key", False),
    ]:
        path = _config(tmp_path, BASE + _reader(host, key_file))
        out = _check(path)
        assert out.returncode == 0, out.stderr
        line = line_of(path, "listen = {")
        warning = f"{path}:{line}: patrol.readers.0.listen: reader 'app' listens on {host}:15040"
        assert (warning in out.stderr) is warned, out.stderr


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("ab" * 16 + "\n", "the HMAC key is 16 bytes"),
        ("not hex at all\n", "must hold only hex digits"),
        (None, "No such file"),
    ],
    ids=["short", "not-hex", "missing"],
)
def test_a_bad_reader_key_is_refused_naming_the_reader_its_line_and_the_file(
    tmp_path: Path, content: str | None, why: str
) -> None:
    _secrets(tmp_path)
    if content is not None:
        (tmp_path / "app.key").write_text(content)
        (tmp_path / "app.key").chmod(0o640)
    path = _config(tmp_path, BASE + _reader("0.0.0.0", "app.key"))
    out = _check(path)
    assert out.returncode == 2, out.stderr
    line = line_of(path, 'key_file = "app.key"')
    assert f"config error: {path}:{line}: patrol.readers[app].key_file: " in out.stderr
    assert str(tmp_path / "app.key") in out.stderr and why.lower() in out.stderr.lower()
    assert "ab" * 16 not in out.stderr
