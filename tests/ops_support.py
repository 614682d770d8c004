"""Helpers for the operations tests: a test campus with a local endpoint, scraping it."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.fault_support import write_config
from tests.helpers import free_port


def ops_config(directory: Path, *, extra: str = "", **kwargs: Any) -> tuple[Path, int]:
    """The fault-test campus with ``[metrics]`` on a free port (and ``extra`` TOML appended).

    Returns the config path and the metrics port.
    """
    port = free_port()
    path = write_config(directory, metrics_port=port, **kwargs)
    with path.open("a", encoding="utf-8") as out:
        out.write(extra)
    return path, port


def get(port: int, path: str) -> bytes:
    """``GET http://127.0.0.1:<port><path>`` (raises on an HTTP error)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        body: bytes = response.read()
        return body


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, sorted labels): value} (fetched off the event loop)."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    text = (await asyncio.to_thread(get, port, "/metrics")).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def status(port: int) -> dict[str, Any]:
    """``/status`` as JSON data (fetched off the event loop)."""
    body: dict[str, Any] = json.loads(await asyncio.to_thread(get, port, "/status"))
    return body
