"""Register profiles of digital I/O modules: vendor quirks as data with a source.

Every address here is a 0-based Modbus PDU address (what goes on the wire), not
the Modicon 1-based reference a manual prints (``00001`` = coil PDU 0, ``10001`` =
discrete input PDU 0, ``30001`` = input register PDU 0, ``40303`` = holding
register PDU 302). Channels are numbered as the vendor labels them on the
terminal block: ADAM ``DI0``..``DI11`` and Moxa ``DI-00``.. are 0-based; the cheap
boards print ``IN1``.. which is channel 0.

Sources (``../shared/realdata/modbus/``):

* ``advantech_adam6000_di_modules_register_map.json``: ADAM-6000 manual Appendix B.2
  (ADAM-6050/6051/6052/6060).
* ``adam6050_observed_pymodbus_repl_read_discrete_inputs_addr1_count12.json`` with
  ``adam6050_observed_http_digitalinput_all_value.xml``: a real ADAM-6050 answers an
  FC02 read; starting at address 1 returns DI1..DI12 shifted by one, so DI0 is at
  PDU address 0.
* ``moxa_iologik_e1200_register_map.json``: ioLogik E1200 manual Appendix A; DI
  via FC02 from 0x0000, E1214 relays FC01/FC05 from 0x0000.
* ``advantech_adam4150_register_map.json``: ADAM-4100 manual Appendix B.3.
* ``cheap_rs485_boards_register_facts.json``, ``rtu_frames_485_relay_4ch_v1_1_board.json``,
  ``rtu_frames_aliexpress_8ch_relay_8di_board.json``: active-low inputs, 8-bit
  minimum reads, relays at coil 0.

The ioLogik E1240 (analog inputs, for end-of-line supervision) is not in
``realdata``: its map is the ioLogik E1200 manual v16.1 Appendix A as summarised in
nobrega8/mbmap-library ``maps/moxa/iologik-e1240.mbmap.json`` (AI raw values,
FC04 input registers 0..7, uint16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DiFunction = Literal["discrete_inputs", "coils"]
AiFunction = Literal["input_registers", "holding_registers"]
DoFunction = Literal["coil", "word"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterProfile:
    """How to read one model's inputs and drive its outputs (keyword arguments only;
    the defaults are the common case: FC02 from address 0, active high, no minimum
    read, outputs as coils, no analog inputs).

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
        ai_count: number of analog inputs (raw 16-bit values).
        ai_function: Modbus function that reads them (``input_registers`` = FC04,
            ``holding_registers`` = FC03).
        ai_address: PDU address of analog channel 0.
        do_function: ``coil`` (FC05 on ``do_address + n``) or ``word`` (the outputs
            are bits of the holding register ``do_word_address``, read with FC03 and
            written with FC06: ADAM-6051 lists no DO coils).
        do_word_address: PDU address of that register.
    """

    name: str
    model: str
    di_count: int
    di_function: DiFunction = "discrete_inputs"
    di_address: int = 0
    active_low: bool = False
    min_read_count: int = 1
    do_count: int = 0
    do_address: int = 0
    source: str
    ai_count: int = 0
    ai_function: AiFunction = "input_registers"
    ai_address: int = 0
    do_function: DoFunction = "coil"
    do_word_address: int = 0

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
            do_count=16,
            source="Modbus Application Protocol v1.1b3 §6.2 (FC02) and §6.1 (FC01)",
        ),
        RegisterProfile(
            name="adam-6050",
            model="Advantech ADAM-6050 (12 DI / 6 DO)",
            di_count=12,
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
            source="ioLogik E1200 manual Appendix A: DI 10001-10016 = FC02 PDU 0x0000-0x000F",
        ),
        RegisterProfile(
            name="adam-6051",
            model="Advantech ADAM-6051 (14 DI / 2 DO)",
            di_count=14,
            di_function="coils",
            do_count=2,
            do_function="word",
            do_word_address=302,
            source=(
                "ADAM-6000 manual Appendix B.2 via realdata advantech_adam6000_di_modules_"
                "register_map.json: DI 00001-00014 (0X space, FC01); no DO coils, the DO "
                "word is 40303 (PDU 302)"
            ),
        ),
        RegisterProfile(
            name="adam-6052",
            model="Advantech ADAM-6052 (8 DI / 8 DO)",
            di_count=8,
            di_function="coils",
            do_count=8,
            do_address=16,
            source=(
                "ADAM-6000 manual Appendix B.2 via realdata advantech_adam6000_di_modules_"
                "register_map.json: DI 00001-00008, DO 00017-00024 (family pattern)"
            ),
        ),
        RegisterProfile(
            name="adam-6060",
            model="Advantech ADAM-6060 (6 DI / 6 relays)",
            di_count=6,
            di_function="coils",
            do_count=6,
            do_address=16,
            source=(
                "ADAM-6000 manual Appendix B.2 via realdata advantech_adam6000_di_modules_"
                "register_map.json: DI 00001-00006, relays 00017-00022"
            ),
        ),
        RegisterProfile(
            name="adam-4150",
            model="Advantech ADAM-4150 (RS-485, 7 DI / 8 DO)",
            di_count=7,
            di_function="coils",
            do_count=8,
            do_address=16,
            source=(
                "ADAM-4100 manual Appendix B.3 via realdata advantech_adam4150_register_map"
                ".json: DI 00001-00007 (FC01), DO 00017-00024 (FC01/05); ships in ADAM "
                "ASCII, switch it to Modbus RTU first (manual Appendix G)"
            ),
        ),
        RegisterProfile(
            name="iologik-e1212",
            model="Moxa ioLogik E1212 (8 DI + 8 DIO)",
            di_count=16,
            do_count=8,
            source=(
                "realdata moxa_iologik_e1200_register_map.json: DI via FC02 from 0x0000; "
                "the 8 DIO channels (DI 8..15 when set as inputs, coils 0..7 when set as "
                "outputs) are jumper-selected: wire a DIO channel as one or the other"
            ),
        ),
        RegisterProfile(
            name="iologik-e1214",
            model="Moxa ioLogik E1214 (6 DI / 6 relays)",
            di_count=6,
            do_count=6,
            source=(
                "realdata moxa_iologik_e1200_register_map.json E1214: DI 10001-10006 FC02 "
                "0x0000-0x0005, relays 00001-00006 FC01/05 0x0000-0x0005"
            ),
        ),
        RegisterProfile(
            name="iologik-e1240",
            model="Moxa ioLogik E1240 (8 AI)",
            di_count=0,
            ai_count=8,
            source=(
                "ioLogik E1200 manual v16.1 Appendix A (mbmap-library iologik-e1240): "
                "AI 0..7 raw value, uint16, FC04 input registers 0x0000-0x0007"
            ),
        ),
        RegisterProfile(
            name="relay-4ch-485",
            model="'485 Relay 4CH v1.1' board (4 opto inputs / 4 relays, RS-485)",
            di_count=4,
            active_low=True,
            min_read_count=8,
            do_count=4,
            source=(
                "realdata cheap_rs485_boards_register_facts.json and rtu_frames_485_relay_"
                "4ch_v1_1_board.json: FC02 @0 must ask 8 bits (4 gets no reply), inputs "
                "active LOW (0x0E = IN1 triggered), relays FC05 @0..3"
            ),
        ),
        RegisterProfile(
            name="relay-8ch-8di",
            model="'Modbus RTU 8 Channel Relay Switch' board (8 DI / 8 relays, RS-485)",
            di_count=8,
            do_count=8,
            source=(
                "realdata rtu_frames_aliexpress_8ch_relay_8di_board.json: FC02 @0 count 8, "
                "0x20 = input 5 active (active high); relays FC01/FC05 @0..7; the board "
                "also answers slave 0 (never address it as 0: that is broadcast)"
            ),
        ),
        RegisterProfile(
            name="waveshare-io-8ch",
            model="Waveshare Modbus RTU IO 8CH (8 DI / 8 DO, RS-485)",
            di_count=8,
            do_count=8,
            source=(
                "realdata cheap_rs485_boards_register_facts.json (Waveshare wiki): DI "
                "0x0000-0x0007 FC02, DO coils 0x0000-0x0007; V1 boards (before 2021-09) "
                "are not Modbus-compatible"
            ),
        ),
    )
}
