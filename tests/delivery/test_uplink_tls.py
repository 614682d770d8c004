"""The uplink over TLS: server verified against the configured CA, or no connection at all.

Certificates are made here with the ``openssl`` command (a CA, a server cert for
127.0.0.1/localhost signed by it, and a second, unrelated CA); mosquitto serves a
TLS listener with them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.root import TlsConfig
from gateway.daemon import running
from simulators.broker import MosquittoBroker, TlsListener
from tests.fault_support import PANIC, alarms, campus_config, module, wait_until
from tests.helpers import free_port, signed_center
from tests.tls_support import make_pki as _make_pki

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("trusted", [True, False], ids=["right-ca", "wrong-ca"])
async def test_alarm_goes_over_tls_only_to_a_verified_broker(tmp_path: Path, trusted: bool) -> None:
    pki = _make_pki(tmp_path / "pki")
    tls = TlsListener(free_port(), pki["ca"], pki["server"], pki["key"])
    async with (
        MosquittoBroker(tmp_path / "broker", tls=tls) as broker,
        module() as sim,
        signed_center(broker.host, broker.port) as center,
    ):
        cfg = campus_config(tmp_path, broker_port=tls.port, module_port=sim.port)
        ca = pki["ca"] if trusted else pki["other-ca"]
        broker_cfg = cfg.broker.model_copy(update={"tls": TlsConfig(ca_file=ca)})
        cfg = cfg.model_copy(update={"broker": broker_cfg})
        async with running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway:
            assert gateway.uplink is not None and gateway.outbox is not None
            poller = gateway.pollers["io"]
            await wait_until(lambda: None not in poller.inputs, 10, "module read")
            sim.press(PANIC[0])
            if trusted:
                await wait_until(lambda: alarms(center, "alarm.panic"), 10, "panic over TLS")
                assert gateway.uplink.stats.connects >= 1
            else:
                uplink = gateway.uplink
                await wait_until(lambda: uplink.stats.attempts >= 3, 15, "TLS tried, again")
                assert gateway.uplink.stats.connects == 0  # the broker's cert was refused
                assert alarms(center, "alarm.panic") == []
                assert await gateway.outbox.pending_count() >= 1  # kept for a good link
