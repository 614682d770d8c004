"""``docs/asyncapi.yaml`` describes the interface the code has: AsyncAPI 3.0, every
payload a reference to a schema file that exists, every topic under the prefix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import REPO_ROOT

DOC = REPO_ROOT / "docs" / "asyncapi.yaml"


def _doc() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    return data


def test_it_is_asyncapi_3_with_a_channel_for_every_topic() -> None:
    doc = _doc()
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    suffixes = {a.removeprefix("campus/v1/{site}/{gateway}/") for a in addresses}
    assert suffixes == {
        "status", "events/{typePath}", "snapshots/{eventId}", "ack", "cmd/{name}",
        "cmd/{name}/result",
    }  # fmt: skip
    for operation in doc["operations"].values():
        ref = operation["channel"]["$ref"]
        assert ref.removeprefix("#/channels/") in doc["channels"], ref
        assert operation["bindings"]["mqtt"]["qos"] == 1


def test_payloads_reference_the_schema_files_the_tests_validate_against() -> None:
    messages = _doc()["components"]["messages"]
    refs = {name: m["payload"].get("$ref") for name, m in messages.items()}
    files = {name: ref for name, ref in refs.items() if ref is not None}
    assert files == {
        "event": "../gateway/events/event.schema.json",
        "ack": "../gateway/events/ack.schema.json",
        "command": "../gateway/events/command.schema.json",
        "commandResult": "../gateway/events/command-result.schema.json",
    }
    for ref in files.values():
        schema = json.loads((DOC.parent / ref).resolve().read_text(encoding="utf-8"))
        assert schema["$schema"].endswith("2020-12/schema")


def test_the_command_names_are_the_gateways() -> None:
    names = _doc()["channels"]["command"]["parameters"]["name"]["enum"]
    text = Path(REPO_ROOT / "gateway" / "alarm" / "commands.py").read_text(encoding="utf-8")
    for name in names:
        if name not in ("snapshot", "replay"):  # the cameras' and the outbox's
            assert f'"{name}": ' in text, name
