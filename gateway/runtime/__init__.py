"""The process around the rules (base layer): ``supervisor`` (restarted tasks),
``stage`` (one way to run a device family), ``device_health`` (health events),
``state_store`` (persisted state), ``durable`` (how its file and the outbox
commit), ``onthread`` (a unit of SQLite work in one
thread hop: the outbox's and the state store's commits), ``flag`` (a wait for the
first of several wakes on one future), ``clock`` (NTP sync),
``timebase`` (the rules' time and timers), ``systemd`` (sd_notify) and
``logsetup`` (structlog)."""
