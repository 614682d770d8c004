"""The technician's bench page, served by the daemon (aiohttp, server-sent events).

``feed`` (recent events, the last evidence picture per camera, the center's last
ack), ``timefmt`` (times in the site's zone with the UTC offset), ``model`` (what
the page shows, as JSON), ``auth`` (the optional password), ``app`` (routes),
``server`` (binding and the live stream) and ``static/`` (plain HTML, CSS and a
little JavaScript: no build step, nothing fetched from the internet).
"""
