"""Intrusion panels that report over SIA DC-09 (ANSI/SIA DC-09-2013): the receiver.

``crc`` (CRC-16/ARC), ``frame`` (one ``<LF>…<CR>`` frame: header, CRC and length
checks with the vendor deviations of ``../shared/realdata/dc09``), ``framing``
(frames out of a TCP stream or a UDP datagram), ``crypto`` (AES-CBC, the only
user of ``cryptography``), ``content`` (what follows ``[``: pad, data, x-data,
timestamp), ``dc03`` (SIA DC-03 and Contact ID data blocks), ``writer`` (the frames
we send: ACK, NAK, DUH, and for test benches a panel's own messages),
``retransmit`` (a resent frame is acknowledged again, never stored twice),
``supervision`` (link supervision of each panel), ``receiver`` (one frame in, one
answer out) and ``transport`` (the TCP and UDP listeners).

The driver parses and answers; it hands typed observations
(:mod:`gateway.events.panel_observation`) to the gateway, which maps accounts,
zones and codes to the site (``gateway.panels``).
"""
