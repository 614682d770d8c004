"""The intrusion alarm system: readings → alarms, arming, sirens (GB 50394).

``system`` (the wiring), ``zones`` (alarms, tamper, line faults), ``supervision``
(what a zone's wiring says), ``bypass``, ``areas`` (arming), ``schedule`` (the
school timetable), ``outputs`` (sirens, strobes, relays), ``commands`` (what the
center's commands do here) and ``modules`` (the Modbus I/O modules as a stage).
"""
