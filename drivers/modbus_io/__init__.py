"""Digital-input/output modules over Modbus TCP and RTU.

``profiles`` holds the register maps (data with sources), ``client`` is the only
file that imports pymodbus, ``poller`` turns polls into observations.
"""
