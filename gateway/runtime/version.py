"""The gateway's version, as installed (``campus-gateway --version``, events, metrics)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

_DIST = "campus-gateway"


def gateway_version() -> str:
    """The installed distribution's version (``pyproject.toml`` ``[project] version``).

    ``0+unknown`` when the package is not installed (run from a bare source tree):
    never a guess that looks like a real release.
    """
    try:
        return version(_DIST)
    except PackageNotFoundError:
        return "0+unknown"
