"""Debian's Chromium driven by Selenium through Debian's chromedriver, for the bench page.

Selenium is synchronous; the gateway under test runs on the test's event loop, so
every browser call goes through a thread (:class:`Browser`), and waits poll the
page for a condition with a deadline. :func:`browser` skips the test, saying why,
where Chromium, its driver or Selenium is missing (``scripts/bootstrap.sh``
installs ``chromium``, ``chromium-driver`` and a CJK font).

Chromium runs as root here, so it needs ``--no-sandbox``; it must not reach for the
network (``--disable-background-networking`` and friends), and it gets a fresh
profile per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1440,1500", "--lang=zh-CN",
)  # fmt: skip


class Browser:
    """One Chromium window; every call runs in a thread (the gateway keeps running)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def get(self, url: str) -> None:
        """Open ``url``."""
        await asyncio.to_thread(self.driver.get, url)

    async def js(self, script: str, *args: Any) -> Any:
        """Run ``script`` in the page (``return …`` gives a value)."""
        return await asyncio.to_thread(self.driver.execute_script, script, *args)

    async def until(self, script: str, within: float, what: str, *args: Any) -> Any:
        """Poll ``script`` every 50 ms until it returns something truthy; returns it.

        Raises:
            AssertionError: still falsy after ``within`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            value = await self.js(script, *args)
            if value:
                return value
            if loop.time() > deadline:
                text = await self.js("return document.body.innerText.slice(0, 800)")
                raise AssertionError(
                    f"not within {within} s on the page: {what}; it shows:\n{text}"
                )
            await asyncio.sleep(0.05)

    async def screenshot(self, path: Path) -> None:
        """Save the window as PNG."""
        path.parent.mkdir(parents=True, exist_ok=True)
        ok = await asyncio.to_thread(self.driver.save_screenshot, str(path))
        assert ok, f"screenshot not written to {path}"


@contextlib.contextmanager
def browser(profile: Path) -> Iterator[Browser]:
    """A headless Chromium with a fresh profile in ``profile``; skips where none can run."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    chromium = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    driver_path = shutil.which("chromedriver") or (
        CHROMEDRIVER if Path(CHROMEDRIVER).exists() else None
    )
    if chromium is None or driver_path is None:
        pytest.skip(
            "no Chromium here: scripts/bootstrap.sh installs Debian's chromium and chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
