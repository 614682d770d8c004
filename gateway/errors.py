"""One exception tree, grouped by what the caller does next (STYLE.md rule 2)."""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is wrong: a technician must fix the file.

    The message shows the field as ``label`` when given: entries of a list by
    their id (``zones[Z04].input``) rather than by index, as a technician reads
    the file.

    Attributes:
        file: path of the configuration file.
        field: dotted path of the offending field (``zones.3.input``), or None.
        label: the field as shown in the message (``zones[Z04].input``), or None.
        line: 1-based line in the file where it can be found, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        field: str | None = None,
        line: int | None = None,
        label: str | None = None,
    ) -> None:
        self.file = file
        self.field = field
        self.label = label or field
        self.line = line
        where = file + (f":{line}" if line is not None else "")
        prefix = f"{where}: {self.label}: " if self.label else f"{where}: "
        super().__init__(prefix + message)


class DeviceError(GatewayError):
    """Base for errors talking to one device.

    Attributes:
        device_id: the configured id of the device.
    """

    def __init__(self, message: str, *, device_id: str) -> None:
        self.device_id = device_id
        super().__init__(f"{device_id}: {message}")


class DeviceUnavailable(DeviceError):
    """Transient: the device did not answer (timeout, refused, reset). Back off and retry."""


class DeviceAuthError(DeviceError):
    """The device refused our credentials: a technician must act."""


class DeviceProtocolError(DeviceError):
    """The device answered with something we cannot use: log once, count, skip.

    Attributes:
        raw: the offending frame or document as text (hex for binary frames), for a test.
    """

    def __init__(self, message: str, *, device_id: str, raw: str = "") -> None:
        self.raw = raw
        super().__init__(message, device_id=device_id)


class LibraryUnavailable(GatewayError):
    """A library the configuration needs cannot be loaded (not installed, or a broken
    install, e.g. OpenCV for cameras' pictures): a technician must act; the rest of
    the gateway runs on."""


class UplinkError(GatewayError):
    """The MQTT path failed; the outcome of any publish under way is unknown."""


class PublishRefused(UplinkError):
    """The broker answered a publish with a failure reason (MQTT 5.0 §3.4.2.1, >= 0x80).

    Unlike its parent this is a definite answer: the message was not accepted and
    the connection is fine. The message stays pending and is tried again later.

    Attributes:
        topic: the full topic of the refused publish.
        reason_code: the PUBACK reason code (``0x87`` Not authorized, ``0x97`` Quota
            exceeded …).
    """

    def __init__(self, *, topic: str, reason_code: int) -> None:
        self.topic = topic
        self.reason_code = reason_code
        super().__init__(f"the broker refused the publish on {topic}: reason 0x{reason_code:02X}")


class OutboxError(GatewayError):
    """The local store failed (disk full, corrupt file, locked by another daemon)."""


class StateError(GatewayError):
    """The persisted alarm state (arming, bypasses, latches) cannot be read or written."""


class CommandRefused(GatewayError):
    """A command from the center is refused; the center gets ``error`` as the reason.

    Attributes:
        command: the command name (``arm``), or "" when unknown.
        reason: short machine-readable cause (``bad_signature``, ``expired``,
            ``retained``, ``invalid``, ``rejected`` …).
    """

    def __init__(self, message: str, *, command: str = "", reason: str = "rejected") -> None:
        self.command = command
        self.reason = reason
        super().__init__(message)


class DeviceFault(DeviceProtocolError):
    """The device refused a request with a well-formed SOAP Fault (ONVIF Core §5.11).

    Unlike garbage, a Fault is an answer: for an event subscription it means "this
    subscription is no good any more", and the caller starts a new one.

    Attributes:
        code: the SOAP 1.2 Code value (``env:Sender``, ``env:Receiver``), or "".
        subcodes: nested Subcode values, outermost first (``ter:InvalidArgVal``).
        reason: the Reason text, possibly empty.
    """

    def __init__(
        self,
        message: str,
        *,
        device_id: str,
        raw: str = "",
        code: str = "",
        subcodes: tuple[str, ...] = (),
        reason: str = "",
    ) -> None:
        self.code = code
        self.subcodes = subcodes
        self.reason = reason
        super().__init__(message, device_id=device_id, raw=raw)
