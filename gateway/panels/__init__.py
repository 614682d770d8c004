"""Intrusion panels on the site's map: what a DC-09 panel's report means here.

``codes`` (Contact ID and SIA codes → our event types, the project's own table,
checked against ``realdata/dc09/*.csv``), ``reports`` (a panel message → events:
zone names, areas, codes as received), ``rejections`` (refused frames →
``fault.panel_rejected``, rate-limited) and ``stage`` (the receiver as a daemon stage).
"""
