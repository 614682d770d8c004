"""Delivery to the center: ``outbox`` (SQLite store-and-forward, the source of
truth), ``uplink`` (MQTT 5 adapter), ``mqtt_client`` (client set-up) and
``housekeeping`` (retention, shed reports, storage faults, heartbeat)."""
