"""``[dc09]`` and ``[[panels]]``: intrusion panels that report over SIA DC-09 (issue 16).

The receiver listens on ``[dc09] listen`` (TCP and/or UDP). Each ``[[panels]]`` is
one panel account; its zones and partitions map to the site's names and areas,
so the panel's zone 3 reaches the center as "东门红外". Example::

    [dc09]
    listen = [{ protocol = "tcp", port = 15030 }, { protocol = "udp", port = 15030 }]

    [[panels]]
    id = "east-panel"
    name = "东教学楼报警主机"
    location = "东教学楼一层"
    account = "1234"
    key_file = "east-panel.key"   # with a key, only encrypted messages are taken
    supervision_s = 180           # silent longer than this: fault.device_offline
    area = "TEACH"                # events of no mapped zone or partition

    [[panels.partitions]]
    number = 1
    area = "TEACH"

    [[panels.zones]]
    number = 3
    id = "E03"
    name = "东门红外"
    location = "东门"

Units are in the names (``_s`` seconds). Key files hold the key text: ``ascii``
(16/24/32 characters, the key's own bytes: what every captured panel used) or
``hex`` (32/48/64 hex digits), per ``key_format`` (``drivers/dc09/crypto.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import Field

from gateway.config.base import FilePath, Ident, Strict, read_secret
from gateway.errors import ConfigError

ACCOUNT_PATTERN = r"^[0-9A-Za-z]{1,16}$"
"""DC-09 §5.5.1.6 wants 3-16 hex digits; FOCUS FC-7688 sends ``foc7688``."""


class ListenConfig(Strict):
    """One address the receiver listens on."""

    protocol: Literal["tcp", "udp"]
    host: str = "0.0.0.0"
    port: int = Field(ge=1, le=65535)


class Dc09Config(Strict):
    """``[dc09]``: the receiver.

    ``max_connections``: TCP connections served at once (more are closed at once).
    ``max_connections_per_host``: TCP connections of one address at once on which no
    configured panel has been answered yet; a newer one closes the idlest of them (a
    neighbour's idle connections must not lock the panels out; a panel's own
    connection, which it keeps open and silent between reports, is never closed).
    ``idle_timeout_s``: a TCP connection that sends nothing this long is closed.
    ``retransmit_window_s``: a frame sent again within this time with the same
    account, sequence number and data is acknowledged again, not stored twice.
    ``reject_report_s``: refused frames of one sender and reason give one
    ``fault.panel_rejected`` event, then at most one this often (counted between).
    """

    listen: list[ListenConfig] = Field(default_factory=list)
    max_connections: int = Field(default=256, ge=1, le=10_000)
    max_connections_per_host: int = Field(default=16, ge=1, le=10_000)
    idle_timeout_s: float = Field(default=900.0, gt=0, le=86_400)
    retransmit_window_s: float = Field(default=120.0, gt=0, le=3600)
    reject_report_s: float = Field(default=600.0, gt=0, le=86_400)


class TimestampWindow(Strict):
    """How far a message's timestamp may be from the gateway clock (DC-09 §5.5.1.8
    suggests 20 s behind and 40 s ahead); outside it the panel gets a NAK."""

    past_s: float = Field(default=20.0, ge=0, le=86_400)
    future_s: float = Field(default=40.0, ge=0, le=86_400)


class PanelZoneConfig(Strict):
    """``[[panels.zones]]``: a panel zone by its number, as the site knows it.

    ``id`` is the event ``subject`` (``<panel id>.z<number>`` when omitted);
    ``area`` overrides the partition's area for this zone.
    """

    number: int = Field(ge=0, le=9999)
    id: Ident | None = None
    name: str = Field(min_length=1)
    location: str = ""
    area: Ident | None = None


class PanelPartitionConfig(Strict):
    """``[[panels.partitions]]``: a panel partition (Contact ID GG, SIA ``ri``) → a site area."""

    number: int = Field(ge=0, le=9999)
    area: Ident


class PanelConfig(Strict):
    """``[[panels]]``: one panel account.

    ``supervision_s``: the longest silence allowed (set it above the panel's own
    link-test period); any accepted message restarts it (DC-09 §5.5.2).
    ``area``: the area of events whose zone and partition map to none.
    """

    id: Ident
    name: str = ""
    location: str = ""
    account: str = Field(pattern=ACCOUNT_PATTERN)
    key_file: FilePath | None = None
    key_format: Literal["ascii", "hex"] | None = None
    timestamp_window: TimestampWindow = TimestampWindow()
    supervision_s: float = Field(gt=0, le=7 * 86_400)
    area: Ident | None = None
    partitions: list[PanelPartitionConfig] = Field(default_factory=list)
    zones: list[PanelZoneConfig] = Field(default_factory=list)

    def key(self) -> bytes | None:
        """The AES key in ``key_file`` (surrounding blanks ignored), or None without one.

        Read when the receiver starts (and by ``campus-gateway check-config``), like
        every secret. Two conventions are seen in the field
        (``realdata/dc09/dc09_crc_framing_encryption_notes.md``): ``ascii``, the key
        text's own bytes (every captured sample that could be decrypted:
        ``"AAAAAAAAAAAAAAAA"``, ``"aaaaaaaaaaaaaaaa"``, ``"0123456789ABCDEF"``, as
        pysiaalarm's ``key.encode()``); ``hex``, 32/48/64 hex digits (what a
        Hikvision AX hub's "32 char HEX" setting means). Without ``key_format``, a
        text of 32/48/64 hex digits is refused as ambiguous (it is both); any other
        text is ``ascii``.

        Raises:
            ConfigError: the file cannot be read or is empty, not 16/24/32 printable
                ASCII characters (``ascii``), not 32/48/64 hex digits (``hex``), or hex
                digits without ``key_format``; names the panel and its account, never
                the key.
        """
        if self.key_file is None:
            return None
        who = f"panel {self.id!r} (account {self.account})"
        raw = read_secret(self.key_file, "key_file", f"the AES key of {who}")
        try:
            return _aes_key(raw.decode("ascii"), self.key_format)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"{who}: {exc}", file=str(self.key_file), field="key_file") from exc

    def zone_id(self, number: int) -> str:
        """The subject of zone ``number``: its configured id or ``<panel>.z<number>``."""
        for zone in self.zones:
            if zone.number == number and zone.id is not None:
                return zone.id
        return f"{self.id}.z{number:03d}"


def _aes_key(text: str, key_format: Literal["ascii", "hex"] | None) -> bytes:
    if key_format is None:
        if len(text) in (32, 48, 64) and _is_hex(text):
            raise ValueError(
                f'{len(text)} hex digits: say key_format = "hex" (a {len(text) * 4}-bit'
                f' key) or key_format = "ascii" (these {len(text)} characters)'
            )
        key_format = "ascii"
    if key_format == "hex":
        if len(text) not in (32, 48, 64) or not _is_hex(text):
            raise ValueError(f"a hex key is 32, 48 or 64 hex digits, not {len(text)}")
        return bytes.fromhex(text)
    if len(text) not in (16, 24, 32) or not text.isprintable():
        raise ValueError(
            f"an ascii key is 16, 24 or 32 printable ASCII characters, not {len(text)}"
        )
    return text.encode("ascii")


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdefABCDEF" for c in text)


def check_panels(
    panels: Sequence[PanelConfig],
    dc09: Dc09Config,
    *,
    area_ids: set[str],
    zone_ids: set[str],
    device_ids: set[str],
) -> list[tuple[str, str]]:
    """Cross-checks of ``[dc09]`` and ``[[panels]]``: every problem as (field, message).

    Duplicate panel ids or accounts (accounts compare case-insensitively), ids taken
    by another device, zone numbers or partitions given twice, zone ids taken by a
    ``[[zones]]`` zone or another panel zone, areas that no ``[[areas]]`` defines,
    panels with nowhere to listen.
    """
    problems: list[tuple[str, str]] = []
    if panels and not dc09.listen:
        problems.append(("dc09.listen", "[[panels]] are configured but [dc09] listens nowhere"))
    _duplicates(problems, "dc09.listen", ((a.protocol, a.host, a.port) for a in dc09.listen), "")
    ids: set[str] = set()
    accounts: dict[str, str] = {}
    subjects: set[str] = set(zone_ids)
    for i, panel in enumerate(panels):
        who = f"panel {panel.id!r} (account {panel.account})"
        if panel.id in ids or panel.id in device_ids:
            problems.append((f"panels.{i}.id", f"{who}: id {panel.id!r} is taken"))
        ids.add(panel.id)
        if panel.account.upper() in accounts:
            other = accounts[panel.account.upper()]
            problems.append((f"panels.{i}.account", f"{who}: account also used by {other!r}"))
        accounts[panel.account.upper()] = panel.id
        if panel.area is not None and panel.area not in area_ids:
            problems.append((f"panels.{i}.area", f"{who}: no area {panel.area!r}"))
        _duplicates(problems, f"panels.{i}.partitions", (p.number for p in panel.partitions), who)
        for j, part in enumerate(panel.partitions):
            if part.area not in area_ids:
                problems.append(
                    (f"panels.{i}.partitions.{j}.area", f"{who}: no area {part.area!r}")
                )
        _duplicates(problems, f"panels.{i}.zones", (z.number for z in panel.zones), who)
        for j, zone in enumerate(panel.zones):
            subject = panel.zone_id(zone.number)
            if subject in subjects:
                problems.append(
                    (f"panels.{i}.zones.{j}.id", f"{who}: zone id {subject!r} is taken")
                )
            subjects.add(subject)
            if zone.area is not None and zone.area not in area_ids:
                problems.append((f"panels.{i}.zones.{j}.area", f"{who}: no area {zone.area!r}"))
    return problems


def _duplicates(
    problems: list[tuple[str, str]], field: str, values: Iterable[object], who: str
) -> None:
    seen: set[object] = set()
    for j, value in enumerate(values):
        if value in seen:
            prefix = f"{who}: " if who else ""
            problems.append((f"{field}.{j}", f"{prefix}{value!r} is given twice"))
        seen.add(value)


def panel_context(raw: Any, field: str) -> str:
    """`` (panel <id>, account <acct>)`` for a field under ``panels.<n>`` of the raw
    TOML data, so every error about a panel names its account; "" otherwise."""
    parts = field.split(".")
    if len(parts) < 2 or parts[0] != "panels" or not parts[1].isdigit():
        return ""
    panels = raw.get("panels") if isinstance(raw, dict) else None
    if not isinstance(panels, list) or int(parts[1]) >= len(panels):
        return ""
    panel = panels[int(parts[1])]
    if not isinstance(panel, dict):
        return ""
    return f" (panel {panel.get('id', '?')!r}, account {panel.get('account', '?')})"
