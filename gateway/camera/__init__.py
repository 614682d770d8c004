"""Cameras: ``stage`` (drivers and their tasks), ``rules`` (signals → incidents and
events), ``evidence`` (pictures for alarms) and ``linkage`` (zone alarm → cameras)."""
