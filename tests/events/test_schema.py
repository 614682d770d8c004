"""The strict JSON Schemas of both directions: event types are an enum of what the
code emits, each family's ``data`` has its own schema, and acks, commands and results
have theirs (``gateway/events/*.schema.json``, referenced by ``docs/asyncapi.yaml``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from gateway.commands.signing import sign
from gateway.events.codes import KINDS
from gateway.events.model import EventFactory
from simulators.center_commands import command_payload
from tests.helpers import REPO_ROOT, TEST_KEY, event_validator

SCHEMAS = REPO_ROOT / "gateway" / "events"
PREFIX = "campus/v1/s1/gw1"
FACTORY = EventFactory("campus/s1/gw1", lambda: True)


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _errors(validator: Draft202012Validator, body: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(body)]


def _event(type_: str, state: str = "active", **data: Any) -> dict[str, Any]:
    event = FACTORY.make(type_, device="io", subject="Z01", state=state, data=data,  # type: ignore[arg-type]
                         opens_incident=state == "active")  # fmt: skip
    return event.stored(7, "stream-1").to_dict()


def _snapshot(**data: Any) -> dict[str, Any]:
    base = {"name": "南门", "location": "gate", "camera": "cam1",
            "requested_at": "2026-12-02T08:00:00.000Z"}  # fmt: skip
    return _event("camera.snapshot", "instant", **(base | data))


PICTURE = {"sha256": "ab" * 32, "topic": "snapshots/01KBFQ4X8Q0000000000000000", "bytes": 1024}


def test_the_type_enum_is_every_type_the_code_emits() -> None:
    schema = json.loads((SCHEMAS / "event.schema.json").read_text(encoding="utf-8"))
    assert sorted(schema["properties"]["type"]["enum"]) == sorted(KINDS)


def test_a_misspelt_type_does_not_validate() -> None:
    event = _event("alarm.panic", name="报警按钮")
    assert _errors(event_validator(), event) == []
    event["type"] = "alarm.panik"
    assert _errors(event_validator(), event), "a type no code emits validated"


def test_a_camera_snapshot_needs_its_sha256_or_says_why_there_is_no_picture() -> None:
    validator = event_validator()
    assert _errors(validator, _snapshot(**PICTURE)) == []
    assert _errors(validator, _snapshot(error="timeout after 3 attempts")) == []
    without = {k: v for k, v in PICTURE.items() if k != "sha256"}
    assert _errors(validator, _snapshot(**without)), "a picture without its sha256 validated"
    assert _errors(validator, _snapshot(**PICTURE | {"sha256": "AB" * 32}))  # lowercase hex
    assert _errors(validator, _snapshot(**PICTURE, error="both")), "a picture and an error"
    assert _errors(validator, _snapshot()), "neither a picture nor an error"


@pytest.mark.parametrize(
    ("type_", "state", "data", "why"),
    [
        ("alarm.intrusion", "active", {"latched": "yes"}, "latched is a boolean"),
        ("fault.uplink", "active", {"reason_code": 300}, "a reason code is a byte"),
        ("patrol.checkpoint", "instant", {"devicetime": "yesterday"}, "devicetime is RFC 3339"),
        ("command.result", "instant", {"command": "arm"}, "the audit's fields are required"),
        ("gateway.heartbeat", "instant", {"outbox_depth": 0}, "the heartbeat's figures"),
    ],
)
def test_each_family_has_its_own_data_schema(
    type_: str, state: str, data: dict[str, Any], why: str
) -> None:
    assert _errors(event_validator(), _event(type_, state, **data)), why


def test_an_active_alarm_names_its_incident() -> None:
    event = _event("alarm.panic", name="报警按钮")
    del event["data"]["incident"]
    assert _errors(event_validator(), event)


def test_a_command_result_audit_is_closed_and_its_error_explained() -> None:
    audit = {"command": "disarm", "correlation_id": "c-1", "operator": "王", "params": {},
             "issued_at": None, "expires_at": None, "retained": False, "signed": True,
             "status": "ok"}  # fmt: skip
    validator = event_validator()
    assert _errors(validator, _event("command.result", "instant", **audit)) == []
    assert _errors(validator, _event("command.result", "instant", **audit, status_="x"))
    refused = audit | {"status": "error"}
    assert _errors(validator, _event("command.result", "instant", **refused))
    refused |= {"error": "expired at ...", "reason": "expired"}
    assert _errors(validator, _event("command.result", "instant", **refused)) == []


def test_a_signed_ack_validates_an_unsigned_one_does_not() -> None:
    validator = _validator("ack")
    ack: dict[str, Any] = {"ids": ["01KBFQ4X8Q0000000000000000"], "center": "c1"}
    assert _errors(validator, ack)
    ack["signature"] = sign(TEST_KEY, f"{PREFIX}/ack", ack)
    assert _errors(validator, ack) == []
    by_stream = {"stream": "s", "up_to_seq": 12, "signature": "0" * 64}
    assert _errors(validator, by_stream) == []
    assert _errors(validator, {"stream": "s", "signature": "0" * 64})
    assert _errors(validator, {"signature": "0" * 64})


def test_the_simulated_centers_commands_and_the_results_validate() -> None:
    _, payload = command_payload(f"{PREFIX}/cmd/disarm", {"area": "A"}, key=TEST_KEY)
    command = json.loads(payload)
    assert _errors(_validator("command"), command) == []
    unsigned = copy.deepcopy(command)
    del unsigned["signature"]
    assert _errors(_validator("command"), unsigned)
    assert _errors(_validator("command"), command | {"issued_at": "2026-12-02 08:00:00"})
    results = _validator("command-result")
    ok = {"correlation_id": "c", "status": "ok", "data": {"area": "A"}}
    assert _errors(results, ok) == []
    error = {"correlation_id": None, "status": "error", "error": "x", "data": {"reason": "invalid"}}
    assert _errors(results, error) == []
    assert _errors(results, error | {"data": {}})


def test_schema_files_are_packaged() -> None:
    names = sorted(p.name for p in Path(SCHEMAS).glob("*.schema.json"))
    assert names == [
        "ack.schema.json", "command-result.schema.json", "command.schema.json", "event.schema.json"
    ]  # fmt: skip
