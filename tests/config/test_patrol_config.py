"""``[patrol]`` config: the demo is valid, a bad plan is refused with its field and line,
and a schedule gives the rounds it says (in the site's timezone)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.config.patrol import ScheduleConfig
from gateway.config.root import load_config
from gateway.errors import ConfigError
from gateway.patrol.plan import Plan
from tests.helpers import REPO_ROOT, broken_copy, line_of
from tests.patrol_support import NIGHT, TZ, night_config

DEMO = REPO_ROOT / "config" / "patrol-demo.toml"


def test_patrol_demo_config_is_valid() -> None:
    cfg = load_config(DEMO)
    assert [r.id for r in cfg.patrol.routes] == ["night", "day"]
    assert [r.type for r in cfg.patrol.readers] == ["station", "station", "network", "handheld"]
    assert cfg.patrol.routes[0].schedule.offsets()[0] == dt.timedelta(hours=20)


@pytest.mark.parametrize(
    ("old", "new", "field", "needle", "message"),
    [
        (
            'schedule = { start = "20:00", end = "06:00", every_min = 120 }',
            'schedule = { start = "20:00", end = "06:00", every_min = 180 }',
            "patrol.routes.0.schedule",
            "every_min = 180",
            "GB/T 29315-2022",
        ),
        (
            '{ checkpoint = "CP4", offset_min = 30',
            '{ checkpoint = "CP9", offset_min = 30',
            "patrol.routes.0.stops.3.checkpoint",
            "stops = [",
            "no checkpoint 'CP9'",
        ),
        (
            'card = "A1B2C3D4E6"',
            'card = "0400000002"',
            "patrol.guards.1.card",
            'card = "0400000002"',
            "already used",
        ),
        (
            'checkpoint = "CP3"\ntransport',
            'checkpoint = "CP7"\ntransport',
            "patrol.readers.1.checkpoint",
            'checkpoint = "CP7"',
            "no checkpoint",
        ),
        (
            "port = 15042",
            "port = 15041",
            "patrol.readers.3.listen",
            ("port = 15041 }", 2),
            "already used",
        ),
        (
            'type = "handheld"',
            'type = "wand"',
            "patrol.readers.3",
            ("[[patrol.readers]]", 4),
            "tag",
        ),
        (
            'guard = "G1"\nclock',
            'guard = "G9"\nclock',
            "patrol.readers.3.guard",
            'guard = "G9"',
            "no guard",
        ),
    ],
)
def test_bad_patrol_field_is_named_with_its_line(
    tmp_path: Path, old: str, new: str, field: str, needle: str | tuple[str, int], message: str
) -> None:
    path = broken_copy(DEMO, tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.field == field and message in str(err)
    text, occurrence = needle if isinstance(needle, tuple) else (needle.split("\n")[0], 1)
    assert err.line == line_of(path, text, occurrence)


def test_unknown_timezone_is_refused(tmp_path: Path) -> None:
    path = broken_copy(DEMO, tmp_path, 'timezone = "Asia/Shanghai"', 'timezone = "Asia/Atlantis"')
    with pytest.raises(ConfigError, match="Asia/Atlantis") as info:
        load_config(path)
    assert info.value.field == "site.timezone"


def test_reader_id_must_not_be_a_module_id() -> None:
    cfg = night_config().model_dump()
    cfg["modules"] = [
        {"id": "app", "transport": {"type": "tcp", "host": "127.0.0.1"}, "profile": "adam-6050"}
    ]
    with pytest.raises(ValueError, match="already a device id"):
        type(night_config()).model_validate(cfg)


@pytest.mark.parametrize(
    ("schedule", "starts"),
    [
        ({"start": "20:00", "end": "06:00", "every_min": 120}, [20, 22, 24, 26, 28]),
        ({"start": "08:00", "end": "18:00", "every_min": 120}, [8, 10, 12, 14, 16]),
        ({"start": "09:30"}, [9.5]),
    ],
)
def test_schedule_offsets(schedule: dict[str, object], starts: list[float]) -> None:
    offsets = ScheduleConfig.model_validate(schedule).offsets()
    assert offsets == [dt.timedelta(hours=h) for h in starts]


def test_round_starts_are_in_the_site_timezone_and_numbered_per_night() -> None:
    cfg = night_config()
    plan = Plan(cfg.patrol, "Asia/Shanghai")
    (route,) = plan.routes
    after = NIGHT - dt.timedelta(hours=1)
    rounds = plan.round_starts(route, after, after + dt.timedelta(days=1))
    assert [r.local.hour for r in rounds] == [20, 22, 0, 2, 4]
    assert [r.number for r in rounds] == [1, 2, 3, 4, 5]
    assert rounds[0].start == dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
    assert rounds[2].id == "night@2026-11-30T00:00" and rounds[2].local.tzinfo == TZ


def test_days_limit_the_nights() -> None:
    raw = night_config().patrol.routes[0].model_dump()
    raw["schedule"]["days"] = [1]  # rounds of nights starting on a Monday only
    raw["key_area"] = False
    cfg = night_config(routes=[raw])
    plan = Plan(cfg.patrol, "Asia/Shanghai")
    start = NIGHT - dt.timedelta(hours=1)  # Sunday 19:00
    rounds = plan.round_starts(plan.routes[0], start, start + dt.timedelta(days=2))
    assert {r.local.date() for r in rounds if r.number == 1} == {dt.date(2026, 11, 30)}


def test_a_tag_used_twice_names_the_checkpoint_that_has_it(tmp_path: Path) -> None:
    path = broken_copy(DEMO, tmp_path, 'tag = "0400000002"', 'tag = "0400000001"')
    with pytest.raises(ConfigError, match="already used by checkpoint 'CP1'") as info:
        load_config(path)
    assert info.value.field == "patrol.checkpoints.1.tag"
