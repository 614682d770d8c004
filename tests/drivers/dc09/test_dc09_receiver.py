"""The receiver's rules over real TCP and UDP sockets, with a sink that keeps what it
is handed (the gateway's side is tested in ``tests/panels``)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from drivers.dc09 import transport, writer
from drivers.dc09.frame import parse_frame
from gateway.config.panels import Dc09Config, PanelConfig
from simulators.dc09_link import PanelLink
from simulators.dc09_panel import SimulatedPanel
from tests.fault_support import wait_until
from tests.panels_support import ACCOUNT, KEY_TEXT, Sink, key_file, receiving

pytestmark = pytest.mark.timeout(60)


def _panel(**kw: object) -> PanelConfig:
    return PanelConfig.model_validate({"id": "east", "account": ACCOUNT, "supervision_s": 60, **kw})


def _token(answer: bytes | None) -> str | None:
    return None if answer is None else parse_frame(answer).token


def _seq(answer: bytes | None) -> str | None:
    return None if answer is None else parse_frame(answer).seq


async def test_frames_split_over_reads_and_several_per_read_are_all_taken() -> None:
    sink = Sink()
    async with receiving([_panel()], sink) as (receiver, tcp, _):
        frames = [
            writer.message("ADM-CID", seq, ACCOUNT, f"1130 01 {seq:03d}") for seq in range(1, 5)
        ]
        stream = b"".join(frames)
        link = PanelLink("127.0.0.1", tcp.port)
        for i in range(0, len(stream), 7):  # 7-byte reads cut every frame somewhere
            await link.send(stream[i : i + 7])
        answers = [await link.next_answer(5) for _ in frames]
        await link.send(frames[0][:20])
        await link.close()  # mid-frame: junk, counted
        await sink.wait_for(lambda: bool(sink.rejected()))
    assert [_token(a) for a in answers] == ["ACK"] * 4
    assert [_seq(a) for a in answers] == ["0001", "0002", "0003", "0004"]
    assert [m.reports[0].number for m in sink.messages()] == [1, 2, 3, 4]
    assert sink.rejected()[0].reason == "framing" and receiver.counts["junk"] == 1


async def test_the_ack_comes_only_after_the_sink_returned() -> None:
    sink = Sink()
    sink.hold = asyncio.Event()
    async with receiving([_panel()], sink) as (_, tcp, _):
        link = PanelLink("127.0.0.1", tcp.port)
        await link.send(writer.message("ADM-CID", 1, ACCOUNT, "1120 01 003"))
        await wait_until(lambda: sink.waiting == 1, 5, "the commit under way")
        assert await link.next_answer(0.3) is None  # the commit is still under way
        sink.hold.set()
        answer = await link.next_answer(5)
        await link.close()
    assert _token(answer) == "ACK" and len(sink.messages()) == 1


async def test_a_failed_commit_gets_no_answer_and_the_resend_is_taken() -> None:
    sink = Sink()
    sink.fail = True
    async with receiving([_panel()], sink) as (receiver, tcp, _):
        link = PanelLink("127.0.0.1", tcp.port)
        frame = writer.message("ADM-CID", 1, ACCOUNT, "1120 01 003")
        sentinel = writer.message("NULL", 2, ACCOUNT, None)
        await link.send(frame + sentinel)
        first = await link.next_answer(5)
        sink.fail = False
        await link.send(frame)
        second = await link.next_answer(5)
        await link.close()
    assert _seq(first) == "0002"  # the NULL's ACK: none for the panic
    assert _token(second) == "ACK" and len(sink.messages()) == 1
    assert receiver.counts["sink_failed"] == 1


async def test_a_resent_frame_is_acked_again_but_handed_on_once(tmp_path: Path) -> None:
    sink = Sink()
    panels = [_panel(key_file=key_file(tmp_path))]
    async with receiving(panels, sink) as (receiver, tcp, _):
        key = KEY_TEXT.encode()
        # Ajax resends seq 0373 with a new random pad: new ciphertext, same message.
        copies = [
            writer.message("SIA-DCS", 373, ACCOUNT, "Nri1/BA005", key=key, now=_now())
            for _ in range(3)
        ]
        assert len(set(copies)) == 3
        link = PanelLink("127.0.0.1", tcp.port)
        await link.send(b"".join(copies))
        answers = [await link.next_answer(5) for _ in copies]
        # A panel restarted counts from 0373 again: a different message is new.
        await link.send(writer.message("SIA-DCS", 373, ACCOUNT, "Nri1/BA006", key=key, now=_now()))
        fresh = await link.next_answer(5)
        await link.close()
    assert [_token(a) for a in answers] == ["ACK"] * 3 and _token(fresh) == "ACK"
    assert [m.reports[0].number for m in sink.messages()] == [5, 6]
    assert receiver.counts["duplicates"] == 2


async def test_refusals_get_duh_nak_or_nothing_as_the_standard_says(tmp_path: Path) -> None:
    keyed = _panel(id="keyed", account="5678", key_file=key_file(tmp_path))
    sink = Sink()
    async with receiving([_panel(), keyed], sink) as (receiver, tcp, _):
        link = PanelLink("127.0.0.1", tcp.port)
        cases = {
            "unknown_account": writer.message("ADM-CID", 1, "9999", "1120 01 003"),
            "not_encrypted": writer.message("ADM-CID", 2, "5678", "1120 01 003"),  # forgeable
            "token": writer.build("SIA-DCX", "0003", line="0", account=ACCOUNT, body="]"),
            "no_key": writer.message(
                "ADM-CID", 4, ACCOUNT, "1120 01 003", key=b"B" * 16, now=_now()
            ),
            "decrypt": writer.message(
                "ADM-CID", 5, "5678", "1120 01 003", key=b"B" * 16, now=_now()
            ),
            "timestamp": writer.message("ADM-CID", 6, ACCOUNT, "1120 01 003", now=_now(-120)),
        }
        answers = {}
        for reason, frame in cases.items():
            await link.send(frame)
            answers[reason] = _token(await link.next_answer(5))
        bad_crc = bytearray(writer.message("ADM-CID", 7, ACCOUNT, "1120 01 003"))
        bad_crc[1:5] = b"0000"
        await link.send(
            bytes(bad_crc) + writer.build("ACK", "0001", line="0", account=ACCOUNT, body="]")
        )
        await link.send(writer.message("NULL", 8, ACCOUNT, None))
        after = await link.next_answer(5)
        await link.close()
    assert answers == {
        "unknown_account": "DUH", "not_encrypted": "DUH", "token": "DUH",
        "no_key": "NAK", "decrypt": "NAK", "timestamp": "NAK",
    }  # fmt: skip
    assert (
        after is not None and after[13:17] == b"0008"
    )  # bad CRC, and an ACK sent to us: no answer
    assert sink.messages() == []
    reasons = [r.reason for r in sink.rejected()]
    assert reasons == [*cases, "crc"]
    assert receiver.counts["answers_ignored"] == 1


async def test_nak_carries_the_gateway_time_and_the_panel_corrects_its_clock() -> None:
    sink = Sink()
    async with (
        receiving([_panel()], sink) as (_, tcp, _),
        SimulatedPanel("127.0.0.1", tcp.port, ACCOUNT, clock_offset_s=3600) as sim,
    ):
        outcome = await sim.cid("1120", 1, 3)
    assert [_token(f) for f in outcome.frames] == ["NAK", "ACK"]
    assert abs(sim.clock_offset_s) < 3 and len(sink.messages()) == 1


async def test_udp_datagrams_with_several_frames_are_answered_one_by_one(tmp_path: Path) -> None:
    sink = Sink()
    key = KEY_TEXT.encode()
    async with (
        receiving([_panel(key_file=key_file(tmp_path))], sink) as (_, _, udp),
        SimulatedPanel(
            "127.0.0.1", udp.port, ACCOUNT, key=key, transport="udp", binary_pad=True
        ) as sim,
    ):
        outcomes = await sim.send_packet([("ADM-CID", "1130 01 005"), ("ADM-CID", "3130 01 005")])
    assert [o.answer for o in outcomes] == ["ACK", "ACK"] and sim.malformed == 0
    assert [m.reports[0].qualifier for m in sink.messages()] == ["new", "restore"]


async def test_supervision_goes_offline_after_silence_and_online_on_the_next_message() -> None:
    sink = Sink()
    async with receiving([_panel(supervision_s=0.5)], sink) as (receiver, tcp, _):
        await sink.wait_for(lambda: sink.health() == ["offline"])  # never heard since start
        async with SimulatedPanel("127.0.0.1", tcp.port, ACCOUNT) as sim:
            assert (await sim.link_test()).acked
            await sink.wait_for(lambda: sink.health() == ["offline", "online", "offline"], 3)
    assert sink.messages() == []  # NULL link tests are never messages
    assert receiver.supervision.state == {"east": "offline"}


async def test_connections_beyond_the_limit_are_closed() -> None:
    sink = Sink()
    async with receiving([_panel()], sink, dc09=Dc09Config(max_connections=1)) as (_, tcp, _):
        first = PanelLink("127.0.0.1", tcp.port)
        await first.send(writer.message("NULL", 1, ACCOUNT, None))
        assert await first.next_answer(5) is not None
        second = PanelLink("127.0.0.1", tcp.port)
        await second.send(writer.message("NULL", 2, ACCOUNT, None))
        assert await second.next_answer(0.5) is None
        await first.close()
        await second.close()
    assert tcp.refused_connections == 1


async def test_one_hosts_idle_connections_never_shut_a_panel_out() -> None:
    """A neighbour on the panel's own address holds its share of connections open and
    silent: the panel's new connection closes the one idle longest and is served (a
    fresh review of 2026-12-05: 256 such connections shut every panel out)."""
    sink = Sink()
    cfg = Dc09Config(max_connections_per_host=3)
    async with receiving([_panel()], sink, dc09=cfg) as (_, tcp, _):
        idle = [await asyncio.open_connection("127.0.0.1", tcp.port) for _ in range(3)]
        await wait_until(lambda: tcp.connections == 3, 5, "three idle connections")
        panel = PanelLink("127.0.0.1", tcp.port)
        await panel.send(writer.message("ADM-CID", 1, ACCOUNT, "1120 01 003"))
        assert await panel.next_answer(5) is not None
        assert tcp.evicted_connections == 1 and tcp.refused_connections == 0
        assert tcp.connections == 3
        await panel.close()
        for _, idle_writer in idle:
            idle_writer.close()
    assert [m.reports[0].code for m in sink.messages()] == ["120"]


async def test_connections_a_panel_spoke_on_are_never_closed_for_newer_ones() -> None:
    """Three panels behind one address keep their connections open and silent; silent
    strangers from it then come and go: the panels' next reports are answered at once
    on their own connections (a review of 2026-12-05: each one cost an ACK timeout)."""
    sink = Sink()
    cfg = Dc09Config(max_connections_per_host=2)
    async with receiving([_panel()], sink, dc09=cfg) as (_, tcp, _):
        panels = [PanelLink("127.0.0.1", tcp.port) for _ in range(3)]
        for seq, link in enumerate(panels, start=1):
            await link.send(writer.message("NULL", seq, ACCOUNT, None))
            assert await link.next_answer(5) is not None
        idle = [await asyncio.open_connection("127.0.0.1", tcp.port) for _ in range(3)]
        await wait_until(lambda: tcp.evicted_connections == 1, 5, "a stranger closed")
        for seq, link in enumerate(panels, start=11):
            await link.send(writer.message("NULL", seq, ACCOUNT, None))
            assert await link.next_answer(2) is not None
        assert tcp.connections == 5 and tcp.refused_connections == 0
        for link in panels:
            await link.close()
        for _, idle_writer in idle:
            idle_writer.close()


async def test_a_nak_under_a_known_account_proves_nothing(tmp_path: Path) -> None:
    """Accounts travel in clear: frames under one, encrypted with a made-up key, earn
    a NAK without the key. Such connections must stay evictable, or a stranger holds
    every connection and the real panel is refused (a review of 2026-12-06: 256 of
    them shut every panel out)."""
    sink = Sink()
    key = KEY_TEXT.encode()
    cfg = Dc09Config(max_connections=4, max_connections_per_host=3)
    panels = [_panel(key_file=key_file(tmp_path))]
    async with receiving(panels, sink, dc09=cfg) as (_, tcp, _):
        strangers = []
        for seq in range(1, 5):
            link = PanelLink("127.0.0.1", tcp.port)
            await link.send(
                writer.message("ADM-CID", seq, ACCOUNT, "1120 01 003", key=b"F" * 16, now=_now())
            )
            answer = await link.next_answer(5)
            assert _token(answer) in ("NAK", None)  # the fourth may be the one evicted
            strangers.append(link)
        panel = PanelLink("127.0.0.1", tcp.port)
        await panel.send(writer.message("ADM-CID", 9, ACCOUNT, "1120 01 003", key=key, now=_now()))
        assert _token(await panel.next_answer(5)) == "ACK"
        await panel.close()
        for link in strangers:
            await link.close()
    assert [m.reports[0].code for m in sink.messages()] == ["120"]
    assert tcp.refused_connections == 0


def _now(offset_s: float = 0):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from gateway.events.observation import utcnow

    return utcnow() + timedelta(seconds=offset_s)


async def test_the_ack_echoes_sequence_receiver_line_and_account_exactly() -> None:
    """A malformed echo makes a Pyronix panel report a communication failure."""
    sink = Sink()
    async with (
        receiving([_panel(account="12ab")], sink) as (_, tcp, _),
        SimulatedPanel("127.0.0.1", tcp.port, "12ab", receiver="5A", line="77") as sim,
    ):
        outcome = await sim.sia("BA", 5, area=1)
    (answer,) = outcome.frames
    frame = parse_frame(answer)
    assert (frame.token, frame.seq, frame.receiver, frame.line, frame.account) == (
        "ACK", "0001", "5A", "77", "12ab",
    )  # fmt: skip
    assert answer.endswith(b"[]") and outcome.acked and sim.malformed == 0


async def test_the_simulated_panel_sends_again_when_no_answer_comes() -> None:
    sink = Sink()
    sink.fail_next = 1  # the first commit fails: no answer
    async with (
        receiving([_panel()], sink) as (_, tcp, _),
        SimulatedPanel("127.0.0.1", tcp.port, ACCOUNT, ack_timeout_s=0.5) as sim,
    ):
        outcome = await sim.cid("1120", 1, 3)
    assert outcome.acked and outcome.attempts == 2
    assert [parse_frame(f[1:-1]).seq for f in sim.sent] == ["0001", "0001"]  # sent again
    assert len(sink.messages()) == 1


async def test_stopping_with_a_panel_connected_logs_no_error() -> None:
    """The listener stops (the gateway's Ctrl-C or SIGTERM) while a panel's connection is
    open: the connection ends quietly, not as asyncio's "Exception in callback"."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        async with receiving([_panel()], Sink()) as (_, tcp, _):
            link = PanelLink("127.0.0.1", tcp.port)
            await link.send(writer.message("NULL", 1, ACCOUNT, None))
            assert await link.next_answer(5) is not None  # the connection is being served
        await link.close()
        await asyncio.sleep(0)  # the stream's done-callbacks run on the next turn
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert errors == []


async def test_datagrams_the_kernel_drops_while_the_box_is_busy_are_counted_and_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop cannot read (the box is busy: here the loop itself is sending) while a
    flood fills the socket's receive buffer: the kernel drops datagrams. They used
    to vanish uncounted (review of 2026-12-06); now they are counted from the
    socket's ``drops`` and reported as a ``dropped`` refusal."""
    monkeypatch.setattr(transport, "UDP_DROPS_CHECK_S", 0.2)
    monkeypatch.setattr(transport, "UDP_RECEIVE_BUFFER", 64 * 1024)  # fills fast
    sink = Sink()
    async with receiving([_panel()], sink) as (_, _, udp):
        flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            junk = b"\n" + b"x" * 400 + b"\r"
            # Sent from the loop's own thread: while it sends, nothing reads the socket.
            for _ in range(5_000):
                flood.sendto(junk, ("127.0.0.1", udp.port))
        finally:
            flood.close()
        await sink.wait_for(lambda: any(r.reason == "dropped" for r in sink.rejected()), 5)
    assert udp.dropped_by_kernel > 0 and udp.dropped >= udp.dropped_by_kernel
    dropped = next(r for r in sink.rejected() if r.reason == "dropped")
    assert dropped.peer == f"udp 127.0.0.1:{udp.port}"
    assert dropped.detail.split()[0].isdigit() and int(dropped.detail.split()[0]) > 0
