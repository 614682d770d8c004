"""Config validation: a bad file is rejected with the file, field and line named."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.root import load_config
from gateway.errors import ConfigError
from tests.helpers import REPO_ROOT, broken_copy, line_of

REPO = REPO_ROOT
DEMO = REPO / "config" / "demo.toml"


def test_demo_config_is_valid_and_keeps_chinese_names() -> None:
    cfg = load_config(DEMO)
    assert len(cfg.modules) >= 2
    assert len(cfg.zones) >= 8
    kinds = [z.type for z in cfg.zones]
    assert kinds.count("panic") == 2 and "perimeter" in kinds
    assert "intrusion" in kinds and "tamper" in kinds
    assert cfg.zones[0].name == "门卫室一键报警"
    assert cfg.topic_prefix == "campus/v1/demo-school/gw1"


@pytest.mark.parametrize(
    ("old", "new", "field", "label", "needle"),
    [
        ('type = "panic"', 'type = "panik"', "zones.0.type", "zones[Z01].type", 'type = "panik"'),
        ("input = 2\n", "input = 12\n", "zones.3.input", "zones[Z04].input", "input = 12"),
        ('id = "Z02"', 'id = "Z01"', "zones.1.id", "zones[Z01].id", ('id = "Z01"', 2)),
        (
            "poll_interval_ms = 100",
            "poll_interval_ms = 1",
            "modules.0.poll_interval_ms",
            "modules[gate-io].poll_interval_ms",
            "poll_interval_ms = 1",
        ),
        ('profile = "adam-6050"', 'profile = "adam-9999"', "modules.0", "modules[gate-io]",
         "[[modules]]"),
        ('module = "admin-io"', 'module = "nowhere"', "zones.1.module", "zones[Z02].module",
         '"nowhere"'),
        ('contact = "NC"\ndebounce_ms = 100', 'contac = "NC"', "zones.2.contac",
         "zones[Z03].contac", "contac ="),
    ],
)  # fmt: skip
def test_bad_field_is_named_by_id_with_its_line(
    tmp_path: Path, old: str, new: str, field: str, label: str, needle: str
) -> None:
    path = broken_copy(DEMO, tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.file == str(path)
    assert (err.field, err.label) == (field, label)
    text, occurrence = needle if isinstance(needle, tuple) else (needle, 1)
    assert err.line == line_of(path, text, occurrence)
    assert f"{path}:{err.line}: {label}: " in str(err)
    assert field not in str(err)  # a technician reads ids, not list positions


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("input = 1\ncontact", "input = true\ncontact", "input"),
        ("input = 1\ncontact", 'input = "1"\ncontact', "input"),
        ("input = 1\ncontact", "input = 1.0\ncontact", "input"),
        ("debounce_ms = 100\narea = \"PERIM\"", 'debounce_ms = "100"\narea = "PERIM"',
         "debounce_ms"),
        ('area = "PERIM"\n', 'area = "PERIM"\nlatch = "yes"\n', "latch"),
        ('area = "PERIM"\n', 'area = "PERIM"\nlatch = 1\n', "latch"),
    ],
)  # fmt: skip
def test_a_value_of_another_type_is_refused_not_converted(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    """Review of 2026-12-05: ``input = true`` was input 1 and ``latch = "yes"`` was true."""
    path = broken_copy(DEMO, tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.label == f"zones[Z03].{field}", err
    assert err.line == line_of(path, new.split("\n")[0] if field != "latch" else "latch =")
    assert f"{path}:{err.line}: zones[Z03].{field}: " in str(err)


def test_input_used_twice_is_refused(tmp_path: Path) -> None:
    path = broken_copy(DEMO, tmp_path, "input = 11\n", "input = 1\n")
    with pytest.raises(ConfigError, match="already used by zone 'Z03'"):
        load_config(path)


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = broken_copy(DEMO, tmp_path, 'name = "南围墙红外对射"', 'name = "南围墙红外对射')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == line_of(path, 'name = "南围墙红外对射')


def test_a_config_saved_with_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """Issue 11: Notepad's UTF-8 BOM was refused as "Invalid statement (line 1, column 1)".
    The real ``check-config`` accepts it, and a bad field still gets its own line."""
    shutil.copytree(DEMO.parent, tmp_path / "config")  # with the key files it names
    good = tmp_path / "config" / "bom.toml"
    good.write_bytes(b"\xef\xbb\xbf" + DEMO.read_bytes())
    assert load_config(good).zones[0].name == "门卫室一键报警"
    ok = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", str(good)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    bad = broken_copy(good, tmp_path, "input = 2\n", "input = 12\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.line == line_of(bad, "input = 12")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_check_config_command_exit_codes(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", str(DEMO)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert f"{len(load_config(DEMO).zones)} zones" in ok.stdout
    bad = broken_copy(DEMO, tmp_path, 'type = "panic"', 'type = "panik"')
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert f"{bad}:{line_of(bad, 'panik')}: zones[Z01].type:" in out.stderr


def test_every_problem_is_listed_with_plain_words(tmp_path: Path) -> None:
    path = tmp_path / "typos.toml"
    path.write_text('[site]\nid = "s"\ngateway = "g"\nnme = "x"\n\n[broker]\nprot = 1\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.field, info.value.line) == ("site.nme", 4)
    text = str(info.value)
    assert "unknown key 'nme'" in text and "broker.prot (line 7): unknown key 'prot'" in text


def test_an_unknown_root_key_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "root-typo.toml"
    path.write_text('# a comment\ncolour = "red"\n\n[site]\nid = "s"\ngateway = "g"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.field, info.value.line) == ("colour", 2)
    assert f"{path}:2: colour: unknown key 'colour'" in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "field", "taken_by"),
    [
        ("port = 15088", "port = 9735", "bench.port", "[metrics]"),
        (
            'listen = { host = "127.0.0.1", port = 15040 }',
            'listen = { host = "0.0.0.0", port = 15030 }',
            "dc09.listen.0",
            "patrol reader 'patrol-app'",
        ),
        (
            'listen = { host = "127.0.0.1", port = 15040 }',
            'listen = { host = "localhost", port = 15088 }',
            "patrol.readers.0.listen",
            "the bench page",
        ),
    ],
    ids=["bench-on-metrics", "patrol-on-dc09-every-interface", "localhost-is-127.0.0.1"],
)
def test_two_listeners_on_one_port_are_refused(
    tmp_path: Path, old: str, new: str, field: str, taken_by: str
) -> None:
    path = broken_copy(DEMO, tmp_path, old, new)
    with pytest.raises(ConfigError, match=re.escape(f"already taken by {taken_by}")) as info:
        load_config(path)
    assert info.value.field == field
    assert info.value.line is not None


def test_listeners_on_one_port_of_distinct_addresses_or_udp_are_accepted(tmp_path: Path) -> None:
    path = broken_copy(
        DEMO, tmp_path, 'listen = { host = "127.0.0.1", port = 15040 }',
        'listen = { host = "127.0.0.2", port = 15030 }',
    )  # fmt: skip
    assert load_config(path).patrol.readers[0].listen.port == 15030  # type: ignore[union-attr]


def test_retention_below_thirty_days_is_refused(tmp_path: Path) -> None:
    path = broken_copy(DEMO, tmp_path, "[outbox]\n", "[outbox]\nretention_days = 7\n")
    with pytest.raises(ConfigError, match="greater than or equal to 30") as info:
        load_config(path)
    assert info.value.field == "outbox.retention_days"
