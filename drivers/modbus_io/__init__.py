"""Digital and analog I/O modules over Modbus TCP and RTU.

``profiles`` holds the register maps (data with sources), ``client`` is the only
file that imports pymodbus (one connection per physical line), ``module`` asks one
module for its inputs and drives its outputs, ``poller`` turns one module's polls
into observations, ``line_poller`` shares a line between its units.
"""
