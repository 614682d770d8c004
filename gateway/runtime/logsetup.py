"""structlog set-up: JSON lines when stderr is not a terminal, readable when it is.

Under systemd (stderr is the journal's stream: ``$JOURNAL_STREAM`` names it, see
systemd.exec(5)) every line starts with its syslog priority, ``<3>`` error,
``<4>`` warning, ``<6>`` info, ``<7>`` debug, which journald's stream reader takes
as the entry's ``PRIORITY`` and strips (sd-daemon(3), ``SyslogLevelPrefix=``,
on by default): ``journalctl -p warning -u campus-gateway`` then shows warnings
and errors only, and each entry's message stays one JSON object.

The standard-library loggers (paho, aiomqtt, pymodbus, aiohttp, zeep, httpx,
asyncio), Python's :mod:`warnings` (``logging.captureWarnings``: the
``py.warnings`` logger) and an exception that ends a thread
(:data:`threading.excepthook`) go through the same renderer, so ``--log-json``
gives one JSON object per line whoever logs (issue 11: aiomqtt's plain-text
warnings broke the JSON log). Every
line passes a redactor that replaces the configured secrets (passwords, keys;
also percent-encoded, as in a URL) with ``***``: a secret never reaches a log.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO
from urllib.parse import quote

import structlog

# RFC 5424 severities (syslog(3)): what the <N> prefix carries.
_SYSLOG = {"debug": 7, "info": 6, "warning": 4, "error": 3, "exception": 3, "critical": 2}
_MIN_SECRET = 4  # shorter strings would blank out ordinary words; refuse such secrets instead


def under_journal(stream: TextIO) -> bool:
    """True when ``stream`` is the journal's stream (``$JOURNAL_STREAM`` = ``dev:inode``)."""
    dev, _, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


class Redactor:
    """Replaces every given secret (and its URL-encoded form) with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = set()
        for secret in secrets:
            if len(secret) >= _MIN_SECRET:
                forms.update({secret, quote(secret, safe=""), quote(secret)})
        # longest first, so a secret containing another is replaced whole
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, "***")
        return text


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """An exception that ended a thread (paho's connect thread, an executor's): one
    structured error line, not the interpreter's plain-text traceback."""
    if args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread is not None else "?"
    exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
    structlog.get_logger(__name__).error("thread.crashed", thread=thread, exc_info=exc_info)


def configure_logging(
    level: str = "info",
    *,
    json: bool | None = None,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the stdlib loggers (pymodbus, aiomqtt) to one stream.

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error``.
        json: force JSON (True) or console (False); None picks by ``isatty``.
        secrets: values that must never appear in a line (passwords, keys).
        stream: where lines go (stderr when omitted).
    """
    out = stream or sys.stderr
    use_json = not out.isatty() if json is None else json
    numeric = logging.getLevelNamesMapping()[level.upper()]
    redact = Redactor(secrets)
    journal = under_journal(out)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    inner: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if use_json
        # A plain traceback, not rich's with every frame's locals: that one took 650 ms
        # to render on a loaded box, on the event loop, for each supervised crash.
        else structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )

    def render(logger: Any, method: str, event_dict: structlog.typing.EventDict) -> str:
        priority = _SYSLOG.get(str(event_dict.get("level", method)), 6)
        text = redact(str(inner(logger, method, event_dict)))
        return f"<{priority}>{text}" if journal else text

    exc: structlog.typing.Processor = (
        structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info
    )
    structlog.configure(
        processors=[*shared, exc, render],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, exc, render],
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        )
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), handlers=[handler], force=True)
    logging.captureWarnings(True)  # warnings.warn(...) -> the "py.warnings" logger
    threading.excepthook = _log_thread_exception
    # pymodbus logs every failed connect; the driver reports health transitions itself.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    # onvif-zeep-async, zeep and httpx log every SOAP/HTTP exchange at INFO.
    for name in ("onvif", "zeep", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
