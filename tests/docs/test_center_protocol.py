"""``docs/center-protocol.md`` is enough to write a center: its test vectors verify
with the gateway's code (and with OpenSSL), and its shell center — run exactly as
the page prints it — acks an alarm and sends a signed ``reset`` that a real gateway
accepts."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import rfc8785
from paho.mqtt.client import topic_matches_sub

from gateway.commands.signing import loads, sign, verify
from gateway.config.root import load_config
from gateway.daemon import running
from gateway.events.codes import KINDS
from simulators.broker import MosquittoBroker
from tests.fault_support import PANIC, module, row_states, wait_until, write_config
from tests.helpers import REPO_ROOT, TEST_KEY_FILE

PAGE = REPO_ROOT / "docs" / "center-protocol.md"
_VECTOR = re.compile(r"```text\n(key \(hex\):.*?)```", re.S)


def vectors() -> list[dict[str, str]]:
    """The test vectors of the page: key (hex), topic, payload, canonical, signature."""
    out = []
    for block in _VECTOR.findall(PAGE.read_text(encoding="utf-8")):
        fields = dict(line.split(":", 1) for line in block.strip().splitlines())
        out.append({k.strip(): v.strip() for k, v in fields.items()})
    return out


def shell_center() -> str:
    """The ``sh`` block of the section "An independent center in shell"."""
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("## An independent center in shell", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match is not None, "the page has no shell center"
    return match.group(1)


def test_the_page_has_its_three_vectors() -> None:
    found = vectors()
    assert len(found) == 3
    assert {"key (hex)", "topic", "payload", "canonical", "signature"} == set(found[0])
    assert any("\\u738b" in v["payload"] for v in found), "a non-ASCII name sent escaped"
    assert any("5.0" in v["payload"] for v in found), "a number sent as 5.0"


@pytest.mark.parametrize("vector", vectors(), ids=lambda v: v["topic"].rsplit("/", 1)[-1])
def test_each_documented_vector_verifies(vector: dict[str, str]) -> None:
    key = bytes.fromhex(vector["key (hex)"])
    body = loads(vector["payload"])
    assert rfc8785.dumps(body).decode() == vector["canonical"]
    assert sign(key, vector["topic"], body) == vector["signature"]
    signed = {**body, "signature": vector["signature"]}
    assert verify(key, vector["topic"], loads(json.dumps(signed, ensure_ascii=True)))
    assert not verify(key, vector["topic"] + "x", signed)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize("vector", vectors(), ids=lambda v: v["topic"].rsplit("/", 1)[-1])
def test_openssl_computes_the_documented_signature(vector: dict[str, str]) -> None:
    """An implementation that is not ours agrees (``openssl dgst -mac HMAC``)."""
    signing_input = vector["topic"].encode() + b"\n" + vector["canonical"].encode()
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{vector['key (hex)']}"],
        input=signing_input, capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    assert out.stdout.decode().split("= ")[-1].strip() == vector["signature"]


_TOOLS = ("openssl", "mosquitto_sub", "mosquitto_pub", "mosquitto_rr", "date")


@pytest.mark.timeout(120)
@pytest.mark.skipif(
    any(shutil.which(t) is None for t in _TOOLS),
    reason=f"the shell center needs {', '.join(_TOOLS)} (openssl, mosquitto-clients)",
)
async def test_the_shell_center_of_the_page_acks_an_alarm_and_resets_it(tmp_path: Path) -> None:
    script = tmp_path / "center.sh"
    script.write_text(shell_center(), encoding="utf-8")
    outbox = tmp_path / "outbox.sqlite"
    async with MosquittoBroker(tmp_path / "broker") as broker, module() as sim:
        path = write_config(
            tmp_path, broker_port=broker.port, module_port=sim.port, ack_timeout_s=1.0
        )
        async with running(load_config(path), outbox_path=outbox) as gateway:
            assert gateway.uplink is not None
            await wait_until(gateway.uplink.stats.connected.is_set, 10, "gateway connected")
            env = {
                **os.environ,
                "HOST": broker.host,
                "PORT": str(broker.port),
                "PREFIX": "campus/v1/fault-school/gw1",
                "KEY_FILE": str(TEST_KEY_FILE),
            }
            sim.press(PANIC[0])
            await wait_until(
                lambda: any(t == "alarm.panic" for t, *_ in row_states(outbox)), 10, "stored"
            )
            sim.release(PANIC[0])  # the button back at rest: a reset may clear the latch
            assert gateway.engine is not None
            zone = gateway.engine.zones[f"P{PANIC[0]}"]
            await wait_until(lambda: not zone.violated, 10, "the release read")
            # the panic is re-sent until acked, so a center started now cannot miss it
            center = await asyncio.create_subprocess_exec(
                "sh", str(script), cwd=tmp_path, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, stderr = await asyncio.wait_for(center.communicate(), 90)
            lines = stdout.decode().splitlines()
            assert center.returncode == 0, (lines, stderr.decode())
            # the alarm (active), then its restore (cleared) that the reset made
            _, panic_id, _, _ = next(r for r in row_states(outbox) if r[0] == "alarm.panic")
            assert f"panic {panic_id}" in lines and f"acked {panic_id}" in lines

            def acked() -> bool:  # the mark rides in a later commit (mark_linger_ms)
                return any(r[1] == panic_id and r[3] for r in row_states(outbox))

            await wait_until(acked, 10, "the shell center's signed ack taken")
            result = json.loads(next(x for x in lines if x.startswith("result "))[7:])
            assert result["status"] == "ok", result
            assert result["correlation_id"].startswith("shell-")
            assert f"P{PANIC[0]}" in result["data"]["cleared"]
            assert _refused(gateway) == 0


def _refused(gateway: object) -> float:
    registry = gateway.metrics.registry  # type: ignore[attr-defined]
    return sum(
        registry.get_sample_value("campus_gateway_acks_refused_total", {"reason": r}) or 0.0
        for r in ("malformed", "unsigned", "bad_signature")
    )


def life_safety_path() -> list[str]:
    """The topic filters the page gives for the life-safety path."""
    section = PAGE.read_text(encoding="utf-8").split("the *life-safety\npath*:", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    return block.split()


def test_the_life_safety_path_takes_every_priority_1_type_and_nothing_else() -> None:
    kinds = [*KINDS.values(), *(k.when_armed for k in KINDS.values() if k.when_armed)]
    filters = life_safety_path()
    assert filters
    for kind in kinds:
        topic = "campus/v1/a-school/gw1/events/" + kind.type.replace(".", "/")
        taken = any(topic_matches_sub(f, topic) for f in filters)
        assert taken == (kind.priority == 1), kind
