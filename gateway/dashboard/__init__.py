"""Zone and area states for dashboards over MQTT: ``publisher`` (the retained
``…/zone/<id>/state`` and ``…/area/<id>/state`` on every change) and
``discovery`` (optional Home Assistant MQTT discovery configs)."""
