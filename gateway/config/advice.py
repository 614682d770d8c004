"""What a config allows but a technician should hear about: warnings, never errors.

``campus-gateway check-config`` prints each as ``warning: …`` (and still exits 0)
and ``run`` logs each as ``config.warning`` at start, so the two never disagree
(a review of 2026-12-06 found configs that ``check-config`` called ok and ``run``
then served differently). None of them stops the service: the alarm path must
start whatever is wrong with the bench page or a file's mode.

* the bench page's password file cannot be read or is empty: the page is not
  served (``bench.not_served``), the alarms run on;
* the bench page listens beyond the loopback interface without a password: anyone
  who reaches it reads zones, alarms and recent events;
* a secret (site key, broker, bench or camera password, panel key) is readable or
  writable by every user on the box, or writable by its group (the README: mode
  0640, owner root, group ``campus-gateway``);
* a network or handheld patrol reader listens beyond the loopback interface
  without ``key_file``: anyone who reaches its port can send reads (a round walked
  by nobody, a reported miss cleared by a late "upload");
* a converter's timeout (``converter_timeout_ms``) over 2 s: every attempt on a
  silent unit holds its neighbours' polls that long.
"""

from __future__ import annotations

import ipaddress
import stat
from collections.abc import Iterator
from pathlib import Path

from gateway.config.files import readable_problem, referenced_files
from gateway.config.patrol import StationReaderConfig
from gateway.config.root import GatewayConfig, locate_line

CONVERTER_TIMEOUT_WARN_MS = 2000
"""Above this a converter's timeout (``converter_timeout_ms``) is worth a warning."""


def config_warnings(cfg: GatewayConfig, config_path: Path) -> list[str]:
    """``<file>:<line>: <field>: <what>`` for each thing worth a warning in ``cfg``
    (empty: nothing)."""
    try:
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    out = []
    for field, message in _warnings(cfg):
        line = locate_line(text, field)
        out.append(f"{config_path}{'' if line is None else f':{line}'}: {field}: {message}")
    return out


def _warnings(cfg: GatewayConfig) -> Iterator[tuple[str, str]]:
    bench = cfg.bench
    if bench.enabled and bench.password_file is not None:
        problem = readable_problem(bench.password_file)
        if problem is not None:
            yield (
                "bench.password_file",
                f"{bench.password_file}: {problem}: the bench page will not be served",
            )
    if bench.enabled and bench.password_file is None and not _loopback(bench.host):
        yield (
            "bench.host",
            f"{bench.host!r} without bench.password_file: anyone who reaches port "
            f"{bench.port} reads the zones, alarms and recent events; set a password or "
            "bind 127.0.0.1 and use an SSH tunnel",
        )
    secrets = [(field, path) for field, _, path in referenced_files(cfg)]
    if bench.enabled and bench.password_file is not None:
        secrets.append(("bench.password_file", bench.password_file))
    for field, path in secrets:
        if field.startswith("broker.tls.") and not field.endswith("key_file"):
            continue  # certificates are public
        mode = _mode(path)
        if mode is None:
            continue
        if mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP):
            who = "every user on the box" if mode & (stat.S_IROTH | stat.S_IWOTH) else "its group"
            what = "readable" if mode & stat.S_IROTH else "writable"
            yield (
                field,
                f"{path} is {what} by {who} (mode {stat.S_IMODE(mode):04o}); chmod 0640 "
                "and chgrp campus-gateway",
            )
    for i, reader in enumerate(cfg.patrol.readers):
        if isinstance(reader, StationReaderConfig) or reader.key_file is not None:
            continue
        if not _loopback(reader.listen.host):
            yield (
                f"patrol.readers.{i}.listen",
                f"reader {reader.id!r} listens on {reader.listen.host}:{reader.listen.port} "
                "without key_file: anyone who reaches the port can send patrol reads; "
                "give the reader a key (openssl rand -hex 32) or listen on 127.0.0.1 "
                "behind its bridge",
            )
    for i, module in enumerate(cfg.modules):
        if module.converter_timeout_ms > CONVERTER_TIMEOUT_WARN_MS:
            yield (
                f"modules.{i}.converter_timeout_ms",
                f"{module.converter_timeout_ms} ms: on a converter's line every attempt "
                "on a silent unit holds its neighbours' polls (and panics) this long; "
                "shorten the converter's own response timeout",
            )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode
    except OSError:
        return None
