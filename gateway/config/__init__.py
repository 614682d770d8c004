"""The gateway's configuration: one TOML file, validated strictly (base layer).

``root`` (the file: ``GatewayConfig``, ``load_config``, site, broker, outbox,
modules), ``base`` (strictness, ids), ``transports`` (Modbus TCP/RTU), ``alarm``
(zones, areas, schedules, outputs, commands) and ``alarm_checks`` (its
cross-checks), ``camera`` (cameras, linkage), ``patrol`` (guard tour),
``modbus_profiles`` (the register maps of the I/O modules we know).
"""
