"""Event types: priority and the alarm-industry codes they carry.

The project's own table (DESIGN.md: the daemon never reads ``../shared`` at run
time). Contact ID codes are Ademco Contact ID (SIA DC-05) event codes; SIA codes
are SIA DC-03 two-letter codes, the active one and the restore one as the
Contact ID -> SIA mapping gives them (Q=1 new event, Q=3 restore).
``tests/test_codes.py`` checks every row against ``realdata/dc09/*.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EventKind:
    """What an event type means to the center.

    Attributes:
        type: dotted event type (``alarm.panic``).
        priority: 1 life safety · 2 intrusion/perimeter/tamper · 3 faults ·
            4 state, motion, checkpoint · 5 telemetry (DESIGN.md "The event").
        cid: Contact ID event code (3 digits) or None.
        sia: SIA code for a new event / active state, or None.
        sia_restore: SIA code for the restore (``cleared``) of this condition, or None.
        when_armed: what the type is when its source watches an armed area (a
            camera bound to an area: its analytics alarm like a zone), or None
            when arming does not change it.
    """

    type: str
    priority: int
    cid: str | None = None
    sia: str | None = None
    sia_restore: str | None = None
    when_armed: EventKind | None = None

    def in_area(self, armed: bool) -> EventKind:
        """The kind for a source in an area that is ``armed`` or not."""
        return self.when_armed if armed and self.when_armed is not None else self

    @property
    def alarm_class(self) -> bool:
        """Priority 1-2: an alarm; escalated when the center does not ack it in time
        (priority 1-3 all stay open until acked and are never shed)."""
        return self.priority <= 2


KINDS: dict[str, EventKind] = {
    k.type: k
    for k in (
        # CID 120 Panic Alarm -> SIA PA / PH.
        EventKind("alarm.panic", 1, cid="120", sia="PA", sia_restore="PH"),
        # CID 130 Burglary -> SIA BA / BH.
        EventKind("alarm.intrusion", 2, cid="130", sia="BA", sia_restore="BH"),
        # CID 131 Perimeter -> SIA BA / BH.
        EventKind("alarm.perimeter", 2, cid="131", sia="BA", sia_restore="BH"),
        # CID 137 Burg-Tamper -> SIA TA / TR.
        EventKind("alarm.tamper", 2, cid="137", sia="TA", sia_restore="TR"),
        # CID 380 Sensor trouble -> SIA YX / YZ.
        EventKind("fault.line", 3, cid="380", sia="YX", sia_restore="YZ"),
        # CID 333 Expansion module failure -> SIA ET / ER.
        EventKind("fault.device_offline", 3, cid="333", sia="ET", sia_restore="ER"),
        EventKind("device.online", 4, cid="333", sia="ER"),
        # CID 305 System reset -> SIA YW.
        EventKind("gateway.started", 4, cid="305", sia="YW"),
        EventKind("gateway.heartbeat", 5),
        # CID 625 Time/Date reset -> SIA JT Time Changed: the wall clock was stepped
        # (gateway/runtime/clock_step.py); durations are unaffected, event times jump.
        EventKind("gateway.clock_step", 5, cid="625", sia="JT"),
        EventKind("gateway.buffer_shed", 3),
        # CID 350 Communication trouble -> SIA YC / YK: the broker refuses our publishes
        # (a PUBACK with a failure reason, e.g. an ACL denying a topic).
        EventKind("fault.uplink", 3, cid="350", sia="YC", sia_restore="YK"),
        # An ack the gateway refused (unsigned, badly signed, malformed): a center whose
        # acks never count, or a forger on the broker (gateway/delivery/ack_refusals.py).
        EventKind("fault.ack_refused", 3),
        # CID 300 System trouble -> SIA YX / YZ (the outbox disk or file failed).
        EventKind("fault.storage", 3, cid="300", sia="YX", sia_restore="YZ"),
        # CID 354 Failure to communicate event -> SIA YC / YK: an alarm the center has not
        # acked within escalate_after_s (gateway/delivery/escalation.py). 3 like the
        # uplink's own faults: acked, never shed, and never escalated itself.
        EventKind("alarm.unacknowledged", 3, cid="354", sia="YC", sia_restore="YK"),
        # Cameras (drivers/onvif_camera). Analytics follow the campus, not the source:
        # on a camera bound to an armed area they are intrusion alarms (priority 2,
        # acked), like a zone; otherwise 4. A line crossing is a boundary crossed: CID
        # 131 Perimeter -> SIA BA / BH; a field intrusion is someone inside a watched
        # region: CID 132 Interior -> SIA BA / BH. Motion stays 4 (too common to alarm).
        EventKind("camera.motion", 4),
        EventKind(
            "camera.line_crossing",
            4,
            when_armed=EventKind("camera.line_crossing", 2, cid="131", sia="BA", sia_restore="BH"),
        ),
        EventKind(
            "camera.field_intrusion",
            4,
            when_armed=EventKind(
                "camera.field_intrusion", 2, cid="132", sia="BA", sia_restore="BH"
            ),
        ),
        EventKind("camera.digital_input", 4),
        # CID 144 Sensor Tamper -> SIA TA / TR: a camera covered, moved or defocused.
        EventKind("camera.tamper", 2, cid="144", sia="TA", sia_restore="TR"),
        # Evidence: 3 so it is never shed and follows the alarms it documents.
        EventKind("camera.snapshot", 3),
        EventKind("camera.event", 4),  # a topic no table knows, forwarded as sent
        EventKind("camera.status", 5),  # relay, CPU, storage, day/night: telemetry
        # Guard tour (gateway/patrol; GB/T 29315-2022: key areas patrolled >= 5 times a
        # day). No Contact ID or SIA code means "guard tour stop missed/late" (SIA JK
        # "latchkey alert" is about a user code, not a tour), so none is sent.
        EventKind("patrol.missed", 3),
        EventKind("patrol.late", 3),
        EventKind("patrol.out_of_order", 3),
        EventKind("patrol.unknown_tag", 3),  # a foreign tag or card: someone must look
        EventKind("patrol.checkpoint", 4),
        EventKind("patrol.round_started", 4),
        EventKind("patrol.round_completed", 4),
        # SIA XT / XR transmitter battery trouble / restoral: a patrol reader's own
        # battery. CID 384 (RF low battery) would fit but has no SIA mapping in the
        # Contact ID table, and CID 302 means the panel's system battery.
        EventKind("fault.low_battery", 3, sia="XT", sia_restore="XR"),
        # A connection to a keyed reader's port that did not answer its challenge.
        EventKind("fault.reader_rejected", 3),
        # Intrusion alarm system (gateway/zones, areas, outputs, commands).
        # CID 150 24 Hour (Auxiliary) -> SIA UA / UH: water, temperature, equipment.
        EventKind("alarm.technical", 3, cid="150", sia="UA", sia_restore="UH"),
        # Contact ID 401 tells opening from closing by its qualifier (E/R), which one
        # event type cannot carry; the SIA codes OP (opening) / CL (closing) say it.
        EventKind("area.armed", 4, sia="CL"),
        EventKind("area.disarmed", 4, sia="OP"),
        # CID 570 Zone/Sensor bypass -> SIA BB / BU (unbypass).
        EventKind("zone.bypassed", 4, cid="570", sia="BB", sia_restore="BU"),
        EventKind("output.switched", 4),  # a siren, strobe or relay coil on or off
        # The audit of the center's commands (who armed, disarmed, reset what): 3, never
        # shed, sent before routine state.
        EventKind("command.result", 3),
        # Walk test (gateway/alarm/walk_test): CID 607 Walk-Test Mode, entered (new
        # event) and left (restore); the table gives it no SIA code. A trip is SIA TP
        # "Walk Test Point: this point was tested during a walk test"; the Contact ID
        # test codes (611, 613-615) have no SIA code and differ per zone kind.
        EventKind("maintenance.started", 3, cid="607"),
        EventKind("maintenance.ended", 3, cid="607"),
        EventKind("zone.walk_test", 5, sia="TP"),
        # Intrusion panels over SIA DC-09 (gateway/panels). A panel event carries the
        # codes it was sent with; these are the codes of the type when it sent none.
        # CID 110 Fire -> SIA FA / FH.
        EventKind("alarm.fire", 1, cid="110", sia="FA", sia_restore="FH"),
        # CID 100 Medical -> SIA MA / MH.
        EventKind("alarm.medical", 1, cid="100", sia="MA", sia_restore="MH"),
        # CID 151 Gas detected -> SIA GA / GH (CO, 162, pairs the same).
        EventKind("alarm.gas", 1, cid="151", sia="GA", sia_restore="GH"),
        # A code no table knows: an alarm until someone has looked (SIA UX Undefined).
        EventKind("alarm.panel_unknown", 2, sia="UX"),
        # CID 300 System trouble -> SIA YX / YZ: AC loss, telco line, expansion faults.
        EventKind("fault.panel", 3, cid="300", sia="YX", sia_restore="YZ"),
        # SIA YN Invalid Report: frames a panel sent that the receiver refused.
        EventKind("fault.panel_rejected", 3, sia="YN"),
        EventKind("panel.event", 4),  # openings by user, tests, access, programming …
    )
}


def kind_of(event_type: str) -> EventKind:
    """The :class:`EventKind` of ``event_type``.

    Raises:
        KeyError: an event type this gateway does not define.
    """
    return KINDS[event_type]
