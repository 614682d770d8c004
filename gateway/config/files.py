"""Files a configuration points to: each one must be there, readable, and of its kind.

``campus-gateway check-config`` (and so the unit's ``ExecStartPre``) runs
:func:`check_files` after the config itself validated, so a missing broker
password, HMAC key, TLS file or camera password stops the service before it
starts, with the config file, its line and the field named — instead of a
gateway that starts and then retries a connection for ever while no alarm
leaves the box. A file's content is never shown: only its path and what is
wrong with it (``strerror``, "empty", "not a PEM certificate").
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

from gateway.config.patrol import StationReaderConfig
from gateway.config.root import GatewayConfig, locate_line
from gateway.errors import ConfigError


def referenced_files(cfg: GatewayConfig) -> Iterator[tuple[str, str, Path]]:
    """(dotted field, field as shown, path) of every secret or TLS file ``cfg`` uses."""
    broker = cfg.broker
    if broker.password_file is not None:
        yield "broker.password_file", "broker.password_file", broker.password_file
    if broker.tls is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(broker.tls, key)
            if path is not None:
                yield f"broker.tls.{key}", f"broker.tls.{key}", path
    if cfg.commands.hmac_key_file is not None:
        yield "commands.hmac_key_file", "commands.hmac_key_file", cfg.commands.hmac_key_file
    for i, panel in enumerate(cfg.panels):
        if panel.key_file is not None:
            yield f"panels.{i}.key_file", f"panels[{panel.id}].key_file", panel.key_file
    for i, reader in enumerate(cfg.patrol.readers):
        if not isinstance(reader, StationReaderConfig) and reader.key_file is not None:
            field = f"patrol.readers.{i}.key_file"
            yield field, f"patrol.readers[{reader.id}].key_file", reader.key_file
    for i, camera in enumerate(cfg.cameras):
        if camera.password_file is not None:
            yield (
                f"cameras.{i}.password_file",
                f"cameras[{camera.id}].password_file",
                camera.password_file,
            )


def check_files(cfg: GatewayConfig, config_path: Path) -> list[ConfigError]:
    """Every problem with the files ``cfg`` points to (empty: all is well).

    Each error names the config file, the line and field that point to the file,
    and the file's path. Checks: the file exists, is a regular file, can be read
    by this user and is not empty; TLS files load with :mod:`ssl` (CA bundle,
    certificate with its key); the center's key decodes as ``hmac_key_encoding``
    says (:func:`center_key`).
    """
    text = _text(config_path)
    problems: list[ConfigError] = []
    for field, shown, path in referenced_files(cfg):
        problem = readable_problem(path)
        if problem is not None:
            problems.append(_error(config_path, text, field, shown, f"{path}: {problem}"))
    if not problems:
        try:
            center_key(cfg, config_path)
        except ConfigError as exc:
            problems.append(exc)
        try:
            reader_keys(cfg, config_path)
        except ConfigError as exc:
            problems.append(exc)
    tls = cfg.broker.tls
    if tls is not None and not problems:
        bad_tls = _tls_problem(tls.ca_file, tls.cert_file, tls.key_file)
        if bad_tls is not None:
            field, message = bad_tls
            problems.append(_error(config_path, text, field, field, message))
    return problems


def center_key(cfg: GatewayConfig, config_path: Path) -> bytes | None:
    """The center's site key (None with ``allow_unsigned``), read as ``run`` reads it.

    Raises:
        ConfigError: the key file cannot be read, is not in its encoding or is too
            short; the error names the config file, the line of ``hmac_key_file``
            and the key file (never the key).
    """
    try:
        return cfg.commands.key()
    except ConfigError as exc:
        text = _text(config_path)
        message = str(exc).split(": commands.hmac_key_file: ", 1)[-1]
        field = "commands.hmac_key_file"
        raise _error(config_path, text, field, field, f"{exc.file}: {message}") from exc


def reader_keys(cfg: GatewayConfig, config_path: Path) -> dict[str, bytes]:
    """Reader id → its key, for the patrol readers that have one, read as ``run`` reads
    them.

    Raises:
        ConfigError: the first key file that cannot be read, is not hex or is too
            short; the error names the config file, the line of the reader's
            ``key_file``, the reader's id and the key file (never the key).
    """
    keys = {}
    for i, reader in enumerate(cfg.patrol.readers):
        if isinstance(reader, StationReaderConfig):
            continue
        try:
            key = reader.key()
        except ConfigError as exc:
            text = _text(config_path)
            message = str(exc).split(": key_file: ", 1)[-1]
            field, shown = f"patrol.readers.{i}.key_file", f"patrol.readers[{reader.id}].key_file"
            raise _error(config_path, text, field, shown, f"{exc.file}: {message}") from exc
        if key is not None:
            keys[reader.id] = key
    return keys


def readable_problem(path: Path) -> str | None:
    """What keeps this user from reading ``path`` as a secret (missing, not a regular
    file, unreadable, empty), or None."""
    try:
        with path.open("rb") as handle:
            if not path.is_file():
                return "not a regular file"
            if not handle.read(1):
                return "the file is empty"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _tls_problem(
    ca_file: Path | None, cert_file: Path | None, key_file: Path | None
) -> tuple[str, str] | None:
    """(field, message) when the TLS files do not load as the uplink loads them."""
    if ca_file is not None:
        try:
            ssl.create_default_context(cafile=str(ca_file))
        except (ssl.SSLError, ValueError) as exc:
            return "broker.tls.ca_file", f"{ca_file}: not a PEM CA certificate ({_reason(exc)})"
    if key_file is not None and cert_file is None:
        return "broker.tls.key_file", "a client key needs broker.tls.cert_file"
    if cert_file is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            # An encrypted key would make OpenSSL prompt on the terminal: refuse it.
            context.load_cert_chain(
                str(cert_file), str(key_file) if key_file else None, password=_no_password
            )
        except (ssl.SSLError, ValueError) as exc:
            return (
                "broker.tls.cert_file",
                f"{cert_file} with key {key_file or cert_file}: not a PEM certificate "
                f"and its unencrypted private key ({_reason(exc)})",
            )
    return None


def _no_password() -> bytes:
    raise ValueError("the private key is encrypted; the gateway cannot unlock it unattended")


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or exc)


def _text(config_path: Path) -> str:
    try:
        return config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _error(config_path: Path, text: str, field: str, shown: str, message: str) -> ConfigError:
    return ConfigError(
        message, file=str(config_path), field=field, line=locate_line(text, field), label=shown
    )
