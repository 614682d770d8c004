"""The gateway's version, as installed (``campus-gateway --version``, events, metrics)."""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version

_DIST = "campus-gateway"


@functools.cache
def gateway_version() -> str:
    """The installed distribution's version (``pyproject.toml`` ``[project] version``).

    ``0+unknown`` when the package is not installed (run from a bare source tree):
    never a guess that looks like a real release. Read once per process: the
    heartbeat asks every 10 s, and each read parsed the distribution's metadata
    file; a package upgraded under a running daemon does not change the code it
    runs, so the first answer stays the true one.
    """
    try:
        return version(_DIST)
    except PackageNotFoundError:
        return "0+unknown"
