"""Register profiles of digital-input modules: vendor quirks as data with a source.

Every address here is a 0-based Modbus PDU address (what goes on the wire), not
the Modicon 1-based reference a manual prints (``00001`` = coil PDU 0, ``10001`` =
discrete input PDU 0). Channels are numbered as the vendor labels them on the
terminal block: ADAM ``DI0``..``DI11`` and Moxa ``DI-00``.. are 0-based.

Sources (``../shared/realdata/modbus/``):

* ``advantech_adam6000_di_modules_register_map.json``: ADAM-6000 manual Appendix B.2.
* ``adam6050_observed_pymodbus_repl_read_discrete_inputs_addr1_count12.json`` with
  ``adam6050_observed_http_digitalinput_all_value.xml``: a real ADAM-6050 answers an
  FC02 read; starting at address 1 returns DI1..DI12 shifted by one, so DI0 is at
  PDU address 0.
* ``moxa_iologik_e1200_register_map.json``: ioLogik E1200 manual Appendix A; DI
  via FC02 from 0x0000.
* ``advantech_adam4150_register_map.json``: ADAM-4100 manual Appendix B.3.
* ``cheap_rs485_boards_register_facts.json``: active-low inputs, 8-bit minimum reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DiFunction = Literal["discrete_inputs", "coils"]


@dataclass(frozen=True, slots=True)
class RegisterProfile:
    """How to read one model's digital inputs and drive its outputs.

    Attributes:
        name: profile key used in config (``adam-6050``).
        model: vendor model name.
        di_count: number of digital inputs.
        di_function: Modbus function that reads them (``discrete_inputs`` = FC02,
            ``coils`` = FC01).
        di_address: PDU address of channel 0 (0-based).
        active_low: True when a closed contact reads as 0 on the wire.
        min_read_count: smallest bit count the module answers (some boards
            ignore reads shorter than 8 bits).
        do_count: number of digital outputs / relays (coils).
        do_address: PDU address of output channel 0 (FC01/FC05).
        source: where the map comes from.
    """

    name: str
    model: str
    di_count: int
    di_function: DiFunction
    di_address: int
    active_low: bool
    min_read_count: int
    do_count: int
    do_address: int
    source: str

    @property
    def read_count(self) -> int:
        """Bits to request in one poll: all inputs, at least ``min_read_count``."""
        return max(self.di_count, self.min_read_count)


PROFILES: dict[str, RegisterProfile] = {
    p.name: p
    for p in (
        RegisterProfile(
            name="generic",
            model="generic Modbus DI module",
            di_count=16,
            di_function="discrete_inputs",
            di_address=0,
            active_low=False,
            min_read_count=1,
            do_count=16,
            do_address=0,
            source="Modbus Application Protocol v1.1b3 §6.2 (FC02) and §6.1 (FC01)",
        ),
        RegisterProfile(
            name="adam-6050",
            model="Advantech ADAM-6050 (12 DI / 6 DO)",
            di_count=12,
            di_function="discrete_inputs",
            di_address=0,
            active_low=False,
            min_read_count=1,
            do_count=6,
            do_address=16,
            source=(
                "ADAM-6000 manual Appendix B.2 (DI 00001-00012, DO 00017-00022); "
                "realdata/modbus/adam6050_observed_pymodbus_repl_read_discrete_inputs_"
                "addr1_count12.json shows FC02 with DI0 at PDU address 0"
            ),
        ),
        RegisterProfile(
            name="iologik-e1210",
            model="Moxa ioLogik E1210 (16 DI)",
            di_count=16,
            di_function="discrete_inputs",
            di_address=0,
            active_low=False,
            min_read_count=1,
            do_count=0,
            do_address=0,
            source="ioLogik E1200 manual Appendix A: DI 10001-10016 = FC02 PDU 0x0000-0x000F",
        ),
    )
}


def get_profile(name: str) -> RegisterProfile:
    """Return the profile called ``name``.

    Raises:
        KeyError: no such profile (config validation names the choices).
    """
    return PROFILES[name]
