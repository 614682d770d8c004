"""Alarm-system configuration: every mistake is refused with its file, field and line;
nothing is adjusted (STYLE.md rule 10)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config.alarm_checks import analog_inputs, input_debounce
from gateway.config.root import load_config
from gateway.errors import ConfigError
from tests.helpers import REPO_ROOT

DEMO = REPO_ROOT / "config" / "demo.toml"


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = DEMO.read_text(encoding="utf-8")
    assert old in text, old
    path = tmp_path / "variant.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    (tmp_path / "demo-center.key").write_text("00" * 32 + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ('area = "TEACH"', 'area = "NOWHERE"', "zones.1.area", "no area with id 'NOWHERE'"),
        ('schedule = "NIGHT"', 'schedule = "DAY"', "areas.1.schedule", "no schedule"),
        ("channel = 0\nareas", "channel = 6\nareas", "outputs.0.channel", "outputs 0..5"),
        ('zones = ["Z13", "Z14"]', 'zones = ["Z99"]', "outputs.2.zones", "no zone"),
        ("channel = 1\nzone_types", "channel = 0\nzone_types", "outputs.1.channel", "already"),
        ("tamper_input = 6", "tamper_input = 15", "zones.10.line.tamper_input", "already used"),
        ('"finance-ai"\ninput = 0', '"finance-ai"\ninput = 8', "zones.9.input", "inputs 0..7"),
        ("normal = [8000, 20000]", "normal = [4000, 20000]", "zones.9.line", "overlap"),
        ('contact = "NC"\narea = "TEACH"\nline', 'contact = "NO"\narea = "TEACH"\nline',
         "zones.10", "NC alarm contact"),
        ('start = "22:00"', 'start = "25:00"', "schedules.0.armed.0", "not HH:MM"),
        ("unit = 2\nprofile", "unit = 1\nprofile", "modules.4.unit", "store-4150"),
        ('input = 0\ncontact = "NO"', 'input = 0\ncontact = "NO"\nlatch = false', "zones.0",
         "panic zones always latch until reset (GB 50394 §5.2.3)"),
        ('"relay-4ch-485"', '"relay-4ch-485"\ntimeout_ms = 900', "modules.4.timeout_ms",
         "same line as modules.3: use 500"),
    ],
)  # fmt: skip
def test_alarm_mistakes_name_the_field_and_line(
    tmp_path: Path, old: str, new: str, field: str, message: str
) -> None:
    path = _variant(tmp_path, old, new)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_config(path)
    assert info.value.field is not None and info.value.field.startswith(field), info.value
    assert info.value.line is not None


def test_the_hmac_key_file_is_read_relative_to_the_config_and_never_shown(
    tmp_path: Path,
) -> None:
    path = _variant(tmp_path, 'hmac_key_file = "demo-center.key"', 'hmac_key_file = "k.key"')
    cfg = load_config(path)
    assert cfg.commands.hmac_key_file == tmp_path / "k.key"
    with pytest.raises(ConfigError, match="cannot read the HMAC key") as info:
        cfg.commands.key()
    assert info.value.field == "commands.hmac_key_file"
    (tmp_path / "k.key").write_text("  \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="only hex digits") as info:
        cfg.commands.key()
    (tmp_path / "k.key").write_text("ab" * 32 + "\n", encoding="utf-8")
    assert cfg.commands.key() == b"\xab" * 32
    assert "ab" * 32 not in str(info.value)


def test_driver_settings_come_from_zones_and_their_type_defaults() -> None:
    cfg = load_config(DEMO)
    # Z03/Z04 set 100 ms themselves; Z05 (perimeter) takes [zone_types.perimeter] 300 ms
    assert input_debounce(cfg.zones, cfg.zone_types, "gate-io") == {1: 100, 2: 100}
    assert input_debounce(cfg.zones, cfg.zone_types, "admin-io") == {1: 300}
    assert analog_inputs(cfg.zones, "finance-ai") == [0]
    assert analog_inputs(cfg.zones, "gate-io") == []
    rules = {z.id: z for z in cfg.zones}
    assert rules["Z11"].line is not None and rules["Z10"].line is not None
