"""The center console and the private mosquitto, against a real broker on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import simulators.broker
from gateway.events.model import Event, EventFactory
from simulators.broker import BrokerError, BrokerNotInstalled, MosquittoBroker
from simulators.center import CenterConsole
from simulators.center_cli import build_parser, run_center_cli
from tests.helpers import BrokerFactory, assert_valid_event

PREFIX = "campus/v1/school-1/gw-1"
ACK_TOPIC = f"{PREFIX}/ack"
STREAM = "01JZSTREAM0000000000000000"
PANIC_NAME = "教学楼一层东侧一键报警"


def make_event(seq: int, type_: str = "alarm.panic") -> Event:
    """A stored, schema-valid event from gateway gw-1 of school-1 (Chinese names)."""
    factory = EventFactory("campus/school-1/gw-1", clock_synced=lambda: True)
    event = factory.make(
        type_,
        device="panic-1",
        subject=f"zone-{seq}",
        state="active",
        data={"name": PANIC_NAME, "location": "教学楼1F 东侧走廊"},
        opens_incident=True,
    )
    return event.stored(seq, STREAM)


@contextlib.asynccontextmanager
async def mqtt_client(broker: MosquittoBroker, **options: Any) -> AsyncIterator[aiomqtt.Client]:
    """A connected MQTT 5 client on ``broker``."""
    async with aiomqtt.Client(
        broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5, **options
    ) as client:
        yield client


async def publish(client: aiomqtt.Client, event: Event) -> None:
    """Publish ``event`` on its topic as the gateway would (QoS 1)."""
    await client.publish(f"{PREFIX}/{event.topic_suffix}", event.to_json(), qos=1)


class AckListener:
    """Subscribes to every gateway's ``…/ack`` and keeps what the center sends there."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self._broker = broker
        self._stack = contextlib.AsyncExitStack()
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._arrived = asyncio.Event()

    def ids(self) -> set[str]:
        """Every event id acked so far."""
        return {event_id for _, body in self.messages for event_id in body["ids"]}

    async def _collect(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            self.messages.append((message.topic.value, json.loads(message.payload)))
            self._arrived.set()

    async def wait_for_ids(self, ids: set[str]) -> None:
        """Wait until all of ``ids`` were acked (put a timeout around it)."""
        while not ids <= self.ids():
            self._arrived.clear()
            await self._arrived.wait()

    async def __aenter__(self) -> Self:
        client = await self._stack.enter_async_context(mqtt_client(self._broker))
        await client.subscribe("campus/v1/+/+/ack", qos=1)
        task = asyncio.create_task(self._collect(client))
        self._stack.callback(task.cancel)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()


def console_for(broker: MosquittoBroker, **options: Any) -> CenterConsole:
    """A console on ``broker`` writing to its own text buffer, quick to reconnect."""
    options.setdefault("out", io.StringIO())
    return CenterConsole(broker.host, broker.port, backoff_initial=0.05, **options)


def output_of(console: CenterConsole) -> str:
    assert isinstance(console.out, io.StringIO)
    return console.out.getvalue()


# -- the center console ---------------------------------------------------------------


async def test_reports_one_gap_one_duplicate_and_acks_every_id(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    events = [make_event(seq) for seq in (1, 2, 3, 5)]
    jsonl = tmp_path / "center.jsonl"
    async with (
        AckListener(mosquitto) as acks,
        console_for(mosquitto, jsonl_path=jsonl) as console,
        mqtt_client(mosquitto) as gateway,
    ):
        for event in events:
            await publish(gateway, event)
        await publish(gateway, events[1])  # a re-send keeps the id
        await console.wait_for(lambda: console.deliveries == 5)
        async with asyncio.timeout(5):
            await acks.wait_for_ids({event.id for event in events})

    assert console.gaps == {STREAM: [4]}
    assert console.duplicates == 1
    assert console.invalid == 0
    assert sorted(console.ids()) == sorted(event.id for event in events)
    for received in console.events:
        assert_valid_event(received)
    assert {topic for topic, _ in acks.messages} == {ACK_TOPIC}
    assert acks.ids() == {event.id for event in events}
    text = output_of(console)
    assert text.count("GAP ") == 1
    assert f"GAP stream={STREAM} missing seq 4" in text
    assert text.count("DUP ") == 1
    assert PANIC_NAME in text
    lines = jsonl.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4
    assert PANIC_NAME in lines[0]  # ensure_ascii=False: the name as written, not \u escapes
    assert {json.loads(line)["id"] for line in lines} == acks.ids()


async def test_a_late_event_fills_its_gap(mosquitto: MosquittoBroker) -> None:
    async with console_for(mosquitto) as console, mqtt_client(mosquitto) as gateway:
        for seq in (1, 4, 2, 3):
            await publish(gateway, make_event(seq))
        await console.wait_for(lambda: len(console.events) == 4)
    assert console.gaps == {}
    assert "GAP stream=" + STREAM + " missing seq 2-3" in output_of(console)


async def test_no_ack_mode_sends_no_acks(mosquitto: MosquittoBroker) -> None:
    async with (
        AckListener(mosquitto) as acks,
        console_for(mosquitto, ack=False) as console,
        mqtt_client(mosquitto) as gateway,
    ):
        for seq in (1, 2, 3):
            await publish(gateway, make_event(seq))
        await console.wait_for(lambda: len(console.events) == 3)
        await asyncio.sleep(0.5)  # many times the ack batching delay
    assert acks.messages == []
    assert console.acked_ids == []


async def test_invalid_events_are_counted_and_not_accepted(mosquitto: MosquittoBroker) -> None:
    unstored = make_event(1).to_dict()
    del unstored["seq"], unstored["stream"]
    unstored_json = json.dumps(unstored, ensure_ascii=False)
    async with (
        AckListener(mosquitto) as acks,
        console_for(mosquitto) as console,
        mqtt_client(mosquitto) as gateway,
    ):
        await gateway.publish(f"{PREFIX}/events/alarm/panic", unstored_json, qos=1)
        await gateway.publish(f"{PREFIX}/events/alarm/panic", b"\xff not json", qos=1)
        await gateway.publish(f"{PREFIX}/events/alarm/intrusion", make_event(2).to_json(), qos=1)
        await publish(gateway, make_event(3))
        await console.wait_for(lambda: console.deliveries == 4)
        async with asyncio.timeout(5):
            await acks.wait_for_ids({unstored["id"]})  # received, so acked, though invalid

    assert console.invalid == 3
    assert [event["seq"] for event in console.events] == [3]
    reasons = [rejected.reason for rejected in console.rejected]
    assert "'seq' is a required property" in reasons[0]
    assert "not UTF-8 JSON" in reasons[1]
    assert "wrong topic" in reasons[2]
    assert output_of(console).count("!!! INVALID EVENT") == 3


async def test_keeps_the_last_status_per_gateway(mosquitto: MosquittoBroker) -> None:
    async with console_for(mosquitto) as console, mqtt_client(mosquitto) as gateway:
        await gateway.publish(f"{PREFIX}/status", "online", qos=1, retain=True)
        await console.wait_for(lambda: console.status.get(f"{PREFIX}/status") == "online")
        await gateway.publish(f"{PREFIX}/status", "offline", qos=1, retain=True)
        await console.wait_for(lambda: console.status.get(f"{PREFIX}/status") == "offline")


async def test_reconnects_and_resubscribes_after_a_broker_crash(
    mosquitto: MosquittoBroker,
) -> None:
    async with console_for(mosquitto) as console:
        await mosquitto.kill()
        await console.wait_for(lambda: not console.connected)
        await asyncio.sleep(0.3)  # let it fail a reconnect or two
        await mosquitto.start()
        await console.wait_connected(10)
        async with mqtt_client(mosquitto) as gateway:
            await publish(gateway, make_event(1))
        await console.wait_for(lambda: len(console.events) == 1)
    assert "LINK down" in output_of(console)


async def test_wait_for_times_out_with_a_summary(mosquitto: MosquittoBroker) -> None:
    async with console_for(mosquitto) as console:
        with pytest.raises(TimeoutError, match="events=0 deliveries=0 invalid=0"):
            await console.wait_for(lambda: False, timeout=0.1)


async def test_command_line_runs_for_a_duration_and_reports_gaps(
    mosquitto: MosquittoBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(
        ["--port", str(mosquitto.port), "--duration", "1.5", "--jsonl", str(tmp_path / "c.jsonl")]
    )
    cli = asyncio.create_task(run_center_cli(args))
    seen = ""
    async with asyncio.timeout(5):
        while "LINK up" not in seen:
            await asyncio.sleep(0.02)
            seen += capsys.readouterr().out
    async with mqtt_client(mosquitto) as gateway:
        await publish(gateway, make_event(1))
        await publish(gateway, make_event(3))
    assert await cli == 1  # seq 2 never came
    seen += capsys.readouterr().out
    assert f"GAP stream={STREAM} missing seq 2" in seen
    assert "SUMMARY events=2" in seen
    assert len((tmp_path / "c.jsonl").read_text(encoding="utf-8").splitlines()) == 2


# -- the private mosquitto ------------------------------------------------------------


async def test_broker_starts_again_on_the_same_port_after_a_crash(
    mosquitto: MosquittoBroker,
) -> None:
    port = mosquitto.port
    await mosquitto.kill()
    assert not mosquitto.running
    with pytest.raises(aiomqtt.MqttError):
        async with mqtt_client(mosquitto):
            pass
    await mosquitto.start()
    assert mosquitto.running
    assert mosquitto.port == port
    async with mqtt_client(mosquitto) as client:
        await client.subscribe("t/echo", qos=1)
        await client.publish("t/echo", "hello", qos=1)
        async with asyncio.timeout(5):
            message = await anext(aiter(client.messages))
    assert message.payload == b"hello"


def persistent_session() -> dict[str, Any]:
    """Client options for a persistent MQTT 5 session (clean_start False, 1 h expiry)."""
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    return {"identifier": "center-persistent", "clean_start": False, "properties": properties}


@pytest.mark.parametrize("persistence", [True, False])
async def test_queued_qos1_message_survives_a_restart_only_with_persistence(
    mosquitto_factory: BrokerFactory, persistence: bool
) -> None:
    broker = await mosquitto_factory(persistence=persistence)
    async with mqtt_client(broker, **persistent_session()) as subscriber:
        await subscriber.subscribe("campus/v1/school-1/gw-1/events/#", qos=1)
    async with mqtt_client(broker) as gateway:
        await publish(gateway, make_event(1))
    await broker.restart()

    async with mqtt_client(broker, **persistent_session()) as subscriber:
        received: list[bytes] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2 if persistence else 1):
                async for message in subscriber.messages:
                    assert isinstance(message.payload, bytes)
                    received.append(message.payload)
                    break
    assert len(received) == (1 if persistence else 0)
    if persistence:
        assert_valid_event(json.loads(received[0]))


async def test_broker_start_fails_clearly_when_the_port_is_taken(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    second = MosquittoBroker(tmp_path / "second", port=mosquitto.port, start_timeout=3)
    with pytest.raises(BrokerError, match="Address already in use"):
        await second.start()
    assert not second.running


async def test_a_stopped_brokers_port_stays_reserved_and_refuses_clients(tmp_path: Path) -> None:
    """While the broker is down, a reconnecting client is refused (never connected to
    itself, never to a stranger) and nobody else can take the port; the broker starts on
    it again; the port is given up at the end."""
    broker = MosquittoBroker(tmp_path / "b")  # not started
    port = broker.port

    def down() -> None:
        with socket.socket() as client, pytest.raises(ConnectionRefusedError):
            client.connect((broker.host, port))
        with socket.socket() as stranger, pytest.raises(OSError, match="in use"):
            stranger.bind((broker.host, port))  # as bind(0) elsewhere, or a self-connect's

    down()
    async with broker:
        async with mqtt_client(broker):
            pass
        await broker.stop()
        down()
        await broker.start()
        async with mqtt_client(broker):
            pass
    assert not broker.port_reserved


def test_missing_mosquitto_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(simulators.broker, "DEBIAN_MOSQUITTO", str(tmp_path / "mosquitto"))
    with pytest.raises(BrokerNotInstalled, match="apt-get install mosquitto"):
        MosquittoBroker(tmp_path)


def make_heartbeat(last_seq: int, acked_up_to: int, heartbeat_s: float = 10.0) -> Event:
    """A heartbeat of gw-1 (unstored: no seq) saying where its stream stands."""
    factory = EventFactory("campus/school-1/gw-1", clock_synced=lambda: True)
    return factory.make(
        "gateway.heartbeat",
        device="gateway",
        subject="gw-1",
        state="instant",
        data={
            "outbox_depth": 0,
            "oldest_pending_s": None,
            "unacked_alarms": 0,
            "stored_rows": last_seq,
            "stored_bytes": 0,
            "shed_total": 0,
            "uptime_s": 1.0,
            "version": "test",
            "stream": STREAM,
            "last_seq": last_seq,
            "acked_up_to": acked_up_to,
            "heartbeat_s": heartbeat_s,
        },
    )


async def test_a_console_that_joins_late_reports_no_false_gap_and_a_watcher_never_acks(
    mosquitto: MosquittoBroker,
) -> None:
    """Issue 10 item 12: a console tracks a stream from its first seq, or from the
    heartbeat's acked-up-to; a real gap after that is still a gap."""
    async with (
        AckListener(mosquitto) as acks,
        console_for(mosquitto) as from_event,
        console_for(mosquitto, watch=True) as watcher,
        mqtt_client(mosquitto) as gateway,
    ):
        for seq in (41, 42, 44):  # joined at 41; 43 is missing
            await publish(gateway, make_event(seq))
        await from_event.wait_for(lambda: len(from_event.events) == 3)
        await watcher.wait_for(lambda: len(watcher.events) == 3)
        assert from_event.gaps == {STREAM: [43]}  # not 1-40
        async with console_for(mosquitto) as from_beat:
            await publish(gateway, make_heartbeat(last_seq=47, acked_up_to=45))
            await from_beat.wait_for(lambda: len(from_beat.heartbeats) == 1)
            for seq in (46, 47):
                await publish(gateway, make_event(seq))
            await from_beat.wait_for(lambda: len(from_beat.events) == 2)
            assert from_beat.gaps == {}
            await publish(gateway, make_event(49))
            await from_beat.wait_for(lambda: len(from_beat.events) == 3)
            assert from_beat.gaps == {STREAM: [48]}
        await from_event.wait_for(lambda: len(from_event.acked_ids) >= 6)
    assert watcher.acked_ids == [] and watcher.ack is False
    assert set(acks.ids()) == set(from_event.acked_ids)  # every ack came from the others
    assert "JOIN stream=" in output_of(watcher)


async def test_the_path_goes_down_after_three_missed_heartbeats_and_up_with_the_next(
    mosquitto: MosquittoBroker,
) -> None:
    async with console_for(mosquitto) as console, mqtt_client(mosquitto) as gateway:
        await publish(gateway, make_heartbeat(0, 0, heartbeat_s=0.2))
        await console.wait_for(lambda: console.paths.get("school-1/gw-1") == "up")
        up = asyncio.get_running_loop().time()
        await console.wait_for(lambda: console.paths["school-1/gw-1"] == "down", 5)
        assert asyncio.get_running_loop().time() - up >= 0.55  # 3 x 0.2 s, not sooner
        await publish(gateway, make_heartbeat(0, 0, heartbeat_s=0.2))
        await console.wait_for(lambda: console.paths["school-1/gw-1"] == "up")
    text = output_of(console)
    assert text.count("PATH up school-1/gw-1") == 2 and text.count("PATH down") == 1


def test_a_tail_gap_is_reported_once_it_outlives_a_heartbeat() -> None:
    """The heartbeat's ``last_seq`` beyond what arrived may be in flight; still missing at
    the next heartbeat, it is a gap at the tail (said once)."""
    from simulators.center_report import SeqTracker

    tracker = SeqTracker()
    assert tracker.heartbeat("s", last_seq=5, acked_up_to=3) == [
        "JOIN stream=s after seq 3 (acked up to there)"
    ]
    assert tracker.add("s", 4, "id-4") == []
    assert tracker.heartbeat("s", last_seq=6, acked_up_to=3) == ["TAIL stream=s missing seq 5"]
    assert tracker.heartbeat("s", last_seq=6, acked_up_to=3) == ["TAIL stream=s missing seq 5-6"]
    assert tracker.heartbeat("s", last_seq=6, acked_up_to=3) == []  # said already
    assert tracker.add("s", 2, "id-2") == []  # before this console joined: not tracked
    assert tracker.add("s", 6, "id-6") == [
        "GAP stream=s missing seq 5"
        " (not here yet: overtaken by a higher priority, or lost; LATE if it comes)"
    ]
    assert tracker.gaps() == {"s": [5]}
