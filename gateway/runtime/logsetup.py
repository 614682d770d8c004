"""structlog set-up: JSON lines when stderr is not a terminal, readable when it is."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """Configure structlog and the stdlib loggers (pymodbus, aiomqtt) to one stream.

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error``.
        json: force JSON (True) or console (False); None picks by ``isatty``.
    """
    use_json = not sys.stderr.isatty() if json is None else json
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)
    # pymodbus logs every failed connect; the driver reports health transitions itself.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    # onvif-zeep-async, zeep and httpx log every SOAP/HTTP exchange at INFO.
    for name in ("onvif", "zeep", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
