"""``campus-gateway records``: the safety office reads the local alarm record back, as
the center received it or as a table, filtered by time and type (a review of
2026-12-06: there was no way to get the records out of the box)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from gateway.delivery.outbox import Outbox
from gateway.events.model import EventFactory
from tests.fault_support import write_config
from tests.helpers import REPO_ROOT

FACTORY = EventFactory("campus/fault-school/gw1", lambda: True)


def _records(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "records", *args],
        capture_output=True, text=True, check=False, cwd=REPO_ROOT,
    )  # fmt: skip


async def test_the_record_comes_back_filtered_as_lines_or_a_table(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    old = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # 2026-12-01 07:00 in Asia/Shanghai
    new = datetime(2026, 12, 1, 1, 30, tzinfo=UTC)  # 09:30 local
    async with Outbox(outbox) as box:
        await box.append(
            FACTORY.make("alarm.panic", device="io", subject="P09", state="active", received_at=old)
        )
        armed = await box.append(
            FACTORY.make(
                "area.armed", device="gateway", subject="PERIM", state="instant",
                data={"name": "周界", "by": "center:李老师"}, received_at=new,
            )
        )  # fmt: skip
        panic = await box.append(
            FACTORY.make(
                "alarm.panic", device="io", subject="P10", state="active", received_at=new,
                data={"name": "门卫室一键报警"}, opens_incident=True,
            )
        )  # fmt: skip
        await box.append_blob("snapshots/x", b"\xff\xd8jpeg", 3)  # not an event
    config = write_config(tmp_path, broker_port=1, module_port=1)
    lines = _records(str(config), "--outbox", str(outbox), "--since", "2026-12-01T08:00")
    assert lines.returncode == 0, lines.stderr
    assert [json.loads(line) for line in lines.stdout.splitlines()] == [
        armed.to_dict(),
        panic.to_dict(),
    ]
    table = _records(
        str(config), "--outbox", str(outbox), "--csv", "--type", "alarm.", "--until", "2026-12-02"
    )
    assert table.returncode == 0, table.stderr
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert [(r["time"], r["subject"], r["state"]) for r in rows] == [
        ("2026-12-01 07:00:00", "P09", "active"),
        ("2026-12-01 09:30:00", "P10", "active"),
    ]
    assert rows[1]["incident"] == panic.id and rows[1]["name"] == "门卫室一键报警"
    everything = _records(str(config), "--outbox", str(outbox), "--csv")
    by = [
        r["by"] for r in csv.DictReader(io.StringIO(everything.stdout)) if r["type"] == "area.armed"
    ]
    assert by == ["center:李老师"]


def test_a_missing_outbox_or_a_bad_date_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, broker_port=1, module_port=1)
    missing = _records(str(config), "--outbox", str(tmp_path / "none.sqlite"))
    assert missing.returncode == 1 and "no outbox file here" in missing.stderr
    outbox = tmp_path / "outbox.sqlite"
    outbox.write_bytes(b"")
    bad = _records(str(config), "--outbox", str(outbox), "--since", "yesterday")
    assert bad.returncode == 1 and "'yesterday' is not a date or time" in bad.stderr
