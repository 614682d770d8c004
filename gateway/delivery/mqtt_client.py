"""Builds the uplink's MQTT 5 client: credentials, TLS, Last Will, socket options.

A fresh client per connection (issue 3: the library's queue is never trusted).
Also reads the broker's Receive Maximum from CONNACK, which paho does not apply.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from gateway.config.root import BrokerConfig


def make_client(cfg: BrokerConfig, *, client_id: str, status_topic: str) -> aiomqtt.Client:
    """A new aiomqtt client for one connection attempt.

    The Last Will is a retained ``offline`` on ``status_topic``. The password is
    read from ``cfg.password_file`` at each connection (it may be rotated) and
    never logged.

    Raises:
        OSError: the password or a TLS file cannot be read.
        ssl.SSLError: a TLS file is not a certificate/key.
    """
    password = None
    if cfg.password_file is not None:
        password = cfg.password_file.read_text(encoding="utf-8").strip()
    client = aiomqtt.Client(
        cfg.host,
        cfg.port,
        identifier=client_id,
        username=cfg.username,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=True,
        keepalive=cfg.keepalive,
        timeout=cfg.publish_timeout,
        will=aiomqtt.Will(status_topic, b"offline", qos=1, retain=True),
        max_inflight_messages=cfg.window,
        max_queued_outgoing_messages=0,
        tls_context=_tls_context(cfg),
        # Nagle costs ~40 ms per QoS 1 hop on a quiet link; alarms go out at once.
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    # A full window is normal, not a warning (aiomqtt warns above this many calls).
    client.pending_calls_threshold = cfg.window + 8
    return client


def _tls_context(cfg: BrokerConfig) -> ssl.SSLContext | None:
    if cfg.tls is None:
        return None
    context = ssl.create_default_context(cafile=str(cfg.tls.ca_file) if cfg.tls.ca_file else None)
    if cfg.tls.cert_file is not None:
        context.load_cert_chain(
            str(cfg.tls.cert_file), str(cfg.tls.key_file) if cfg.tls.key_file else None
        )
    if cfg.tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def capture_receive_maximum(client: aiomqtt.Client, sink: list[int]) -> None:
    """Append the broker's Receive Maximum (CONNACK property) to ``sink`` on connect.

    aiomqtt installs its own ``on_connect`` on the paho client; we wrap it.
    """
    paho_client: paho.Client = client._client
    original = paho_client.on_connect

    def on_connect(*args: Any) -> None:
        props = args[4] if len(args) > 4 else None
        value = getattr(props, "ReceiveMaximum", None)
        if isinstance(value, int) and value > 0:
            sink.append(value)
        if original is not None:
            original(*args)

    paho_client.on_connect = on_connect
