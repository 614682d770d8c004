"""Register profiles against a real pymodbus server: every channel lands where the vendor
labels it, and our ADAM-6050 profile reproduces the real captures in ../shared/realdata."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from drivers.modbus_io.module import ModbusIoClient
from drivers.modbus_io.poller import ModulePoller
from gateway.config.modbus_profiles import PROFILES
from gateway.errors import DeviceUnavailable
from simulators.modbus_module import SimulatedModule
from tests.helpers import FIXTURES_PATH, REALDATA_PATH
from tests.modbus_support import PtyLink, Recorder, change, running, tcp_module

REALDATA = REALDATA_PATH / "modbus"
FIXTURES = FIXTURES_PATH / "modbus"
DI_PROFILES = ["adam-6050", "iologik-e1210"]
ALL_DI_PROFILES = [name for name, p in PROFILES.items() if p.di_count]


@pytest.mark.parametrize("profile", DI_PROFILES)
async def test_client_sees_each_input_on_its_channel_only(profile: str) -> None:
    di_count = PROFILES[profile].di_count
    async with (
        SimulatedModule(PROFILES[profile]) as sim,
        ModbusIoClient(tcp_module("m", sim.port, profile=profile)) as client,
    ):
        assert await client.read_inputs() == [False] * di_count
        for channel in range(di_count):
            sim.press(channel)
            expected = [ch == channel for ch in range(di_count)]
            assert await client.read_inputs() == expected, f"DI{channel}"
            sim.release(channel)


@pytest.mark.parametrize("profile", ALL_DI_PROFILES)
async def test_poller_reports_each_input_on_its_channel_only(profile: str) -> None:
    di_count = PROFILES[profile].di_count
    recorder = Recorder()
    async with SimulatedModule(PROFILES[profile]) as sim:
        poller = ModulePoller(tcp_module("m", sim.port, profile=profile), recorder)
        async with running(poller):
            await recorder.wait_for(lambda o: len(recorder.inputs()) == di_count)
            assert [o.closed for o in recorder.inputs()] == [False] * di_count
            for channel in range(di_count):
                before = len(recorder.inputs())
                sim.press(channel)
                await recorder.wait_for(change("m", channel, True))
                assert poller.inputs == [ch == channel for ch in range(di_count)]
                sim.release(channel)
                await recorder.wait_for(change("m", channel, False))
                # exactly the press and the release of this channel, nothing else
                assert [(o.channel, o.closed) for o in recorder.inputs()[before:]] == [
                    (channel, True),
                    (channel, False),
                ]


def _capture_pair(source: str) -> tuple[Path, Path]:
    if source == "realdata":
        if not REALDATA.is_dir():
            pytest.skip(f"real captures not present at {REALDATA} (../shared is not checked out)")
        return (
            REALDATA / "adam6050_observed_http_digitalinput_all_value.xml",
            REALDATA / "adam6050_observed_pymodbus_repl_read_discrete_inputs_addr1_count12.json",
        )
    return (
        FIXTURES / "adam6050_sample_http_digitalinput_all_value.xml",
        FIXTURES / "adam6050_sample_fc02_addr1_count12.json",
    )


@pytest.mark.parametrize("source", ["realdata", "fixture"])
async def test_adam6050_profile_reproduces_http_and_shifted_fc02_captures(source: str) -> None:
    """SecPi's ADAM-6050: the HTTP API shows DI0..DI11 (0-based IDs); a pymodbus FC02
    read that started at address 1 got DI1..DI12, padded to 16 bits. Our profile
    (DI0 at address 0) must give the HTTP values; starting at 1 must give the capture."""
    xml_path, fc02_path = _capture_pair(source)
    root = ET.parse(xml_path).getroot()
    http = {int(di.findtext("ID", "")): di.findtext("VALUE") == "1" for di in root.iter("DI")}
    captured = json.loads(fc02_path.read_text(encoding="utf-8"))["bits"]
    profile = PROFILES["adam-6050"]
    assert sorted(http) == list(range(profile.di_count))

    async with SimulatedModule(profile) as sim:
        for channel, closed in http.items():
            sim.set_input(channel, closed)
        async with ModbusIoClient(tcp_module("adam", sim.port)) as client:
            assert await client.read_inputs() == [http[ch] for ch in range(profile.di_count)]
        off_by_one = dataclasses.replace(profile, di_address=1)
        cfg = tcp_module("adam", sim.port)
        async with ModbusIoClient(cfg, off_by_one) as client:
            shifted = await client.read_inputs()
    # 12 bits asked from address 1: DI1..DI11 and address 12; the reply's 2 data
    # bytes carry 4 padding bits, which the capture shows as False
    assert shifted == captured[: profile.di_count]
    assert captured[profile.di_count :] == [False] * (len(captured) - profile.di_count)
    assert len(captured) == 16


async def test_rtu_over_a_serial_line_reads_the_profile_and_ignores_other_units() -> None:
    profile = PROFILES["iologik-e1210"]
    with PtyLink() as link:
        async with SimulatedModule(profile, serial_port=link.a, unit=3) as sim:
            sim.press(15)
            rtu = {"type": "rtu", "port": link.b, "baudrate": 19200}
            cfg = tcp_module("rtu", 0, profile=profile.name, unit=3, transport=rtu)
            async with ModbusIoClient(cfg) as client:
                assert await client.read_inputs() == [ch == 15 for ch in range(16)]
            other_unit = cfg.model_copy(update={"unit": 4})
            async with ModbusIoClient(other_unit) as client:
                with pytest.raises(DeviceUnavailable, match="no answer"):
                    await client.read_inputs()
