"""Patrol (guard-tour) readers: checkpoint stations polled over Modbus, networked
readers and phone-app bridges sending JSON lines, handheld batch uploads.

``station_map`` (register layout), ``records`` (text formats), ``station`` (the
poller), ``lines`` (the TCP listener both text readers share), ``network``,
``handheld``, ``health``, ``positions``.
"""
