"""The demo shows the bench page: where it is, that the README says so, and the README's
screenshot (taken by tests/bench/test_bench_browser.py with UPDATE_DOCS_SCREENSHOT=1)."""

from __future__ import annotations

import struct

from gateway.config.root import load_config
from simulators.campus import bench_url
from tests.campus_helpers import DEMO_CONFIG
from tests.helpers import REPO_ROOT

SCREENSHOT = REPO_ROOT / "docs" / "bench-page.png"


def test_the_demo_serves_the_page_on_localhost_with_a_password() -> None:
    cfg = load_config(DEMO_CONFIG)
    assert cfg.bench.enabled and cfg.bench.host == "127.0.0.1"
    assert bench_url(cfg) == "http://127.0.0.1:15088/"
    assert (
        cfg.bench.password() == (REPO_ROOT / "config" / "demo-bench.password").read_bytes().strip()
    )


def test_the_readme_gives_the_address_and_shows_the_screenshot() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "http://127.0.0.1:15088/" in readme
    assert "](docs/bench-page.png)" in readme
    header = SCREENSHOT.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    width, height = struct.unpack(">II", header[16:24])
    assert width >= 1200 and height >= 900, (width, height)
