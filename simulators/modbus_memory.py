"""The Modbus memory of a simulated module, computed from its state on every request.

The memory map follows the profile (``gateway.config.modbus_profiles``, sources in
``../shared/realdata/modbus/``), all addresses 0-based PDU:

* discrete inputs (FC02): channel ``n`` at ``di_address + n``;
* coils (FC01/FC05/FC15): output ``n`` at ``do_address + n``; below and around the
  outputs the coil space mirrors the inputs at ``di_address + n``, because the
  ADAM-6000 manual Appendix B.2 lists DI as 0X (coil) space read with FC01 while
  real ADAM-6050 units answer FC02 at the same addresses (SecPi capture), so both
  kinds of reader work;
* every other bit up to the end of the map (rounded up to 16 bits) reads 0, like
  a real ADAM-6050 answering FC02 at address 12 in the SecPi capture
  ``adam6050_observed_pymodbus_repl_read_discrete_inputs_addr1_count12.json``;
  beyond it, exception 0x02 (illegal data address). Writes outside the outputs
  get 0x02;
* registers: analog channel ``n`` at ``ai_address + n`` in the profile's
  ``ai_function`` table (FC04 or FC03); for a ``word`` DO profile (ADAM-6051) the
  holding register ``do_word_address`` holds the outputs as bits (FC03/FC06).
  Other registers get 0x02, other function codes 0x01 (illegal function).

Quirks served as the boards have them: a bit read shorter than the profile's
``min_read_count`` gets no answer at all ('485 Relay 4CH v1.1': "count=4 gets no
reply"). Inputs are set as the physical contact (``closed``); the wire bit is
``closed XOR active_low`` (the profile's polarity unless overridden).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import NoReturn, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusBaseDeviceContext
from pymodbus.exceptions import NoSuchIdException

from gateway.config.modbus_profiles import RegisterProfile


class Bus(Protocol):
    """The RS-485 side of a simulated converter (:class:`simulators.modbus_line.SimulatedLine`)."""

    lock: asyncio.Lock
    serial_port: str | None
    converter_timeout_s: float
    gateway_exceptions: bool

    @property
    def port(self) -> int: ...

    @property
    def running(self) -> bool: ...


class MemoryOwner(Protocol):
    """What the memory reads of its module (:class:`simulators.modbus_module.SimulatedModule`)."""

    profile: RegisterProfile
    delay_s: float
    line: Bus | None

    @property
    def answering(self) -> bool: ...

    @property
    def analog(self) -> Sequence[int]: ...

    @property
    def outputs(self) -> Sequence[bool]: ...

    def output(self, channel: int) -> bool: ...

    def write_output(self, channel: int, on: bool) -> None: ...

    def wire_input(self, channel: int) -> bool: ...

    def unanswered(self) -> None: ...


_FC_READ_COILS = 0x01
_FC_READ_DISCRETE_INPUTS = 0x02
_FC_READ_HOLDING = 0x03
_FC_READ_INPUT_REGISTERS = 0x04
_FC_WRITE_REGISTER = 0x06
_FC_WRITE_COILS = frozenset({0x05, 0x0F})
FC_BIT_READS = frozenset({_FC_READ_COILS, _FC_READ_DISCRETE_INPUTS})


class Memory(ModbusBaseDeviceContext):
    """The module's Modbus memory, computed from the owner's state on every request."""

    def __init__(self, owner: MemoryOwner) -> None:
        self._owner = owner
        p = owner.profile
        end = max(p.di_address + p.read_count, p.do_address + p.do_count, 1)
        self._size = (end + 15) // 16 * 16
        self._entered: weakref.WeakSet[asyncio.Task[object]] = weakref.WeakSet()

    def cancel_delayed(self) -> None:
        """Cancel requests still waiting out ``delay_s`` (the module was switched off)."""
        for task in list(self._entered):
            task.cancel()

    async def async_getValues(
        self, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        refused = await self._enter()
        if refused is not None:
            return refused
        p = self._owner.profile
        if func_code in FC_BIT_READS and count < p.min_read_count:
            self._no_answer()  # the '485 Relay 4CH' board ignores short reads
        if func_code in (_FC_READ_HOLDING, _FC_READ_INPUT_REGISTERS, _FC_WRITE_REGISTER):
            return self._registers(func_code, address, count)
        if func_code not in (*FC_BIT_READS, *_FC_WRITE_COILS):
            return ExcCodes.ILLEGAL_FUNCTION
        if address < 0 or address + count > self._size:
            return ExcCodes.ILLEGAL_ADDRESS
        coils = func_code != _FC_READ_DISCRETE_INPUTS
        return [self._bit(a, coils) for a in range(address, address + count)]

    async def async_setValues(
        self, func_code: int, address: int, values: list[int] | list[bool]
    ) -> None | ExcCodes:
        refused = await self._enter()
        if refused is not None:
            return refused
        p = self._owner.profile
        if func_code == _FC_WRITE_REGISTER and p.do_function == "word":
            if address != p.do_word_address:
                return ExcCodes.ILLEGAL_ADDRESS
            for channel in range(p.do_count):
                self._owner.write_output(channel, bool(int(values[0]) >> channel & 1))
            return None
        if func_code not in _FC_WRITE_COILS or p.do_function != "coil":
            return ExcCodes.ILLEGAL_FUNCTION
        if not (p.do_address <= address and address + len(values) <= p.do_address + p.do_count):
            return ExcCodes.ILLEGAL_ADDRESS
        for offset, value in enumerate(values):
            self._owner.write_output(address - p.do_address + offset, bool(value))
        return None

    def _registers(self, func_code: int, address: int, count: int) -> list[int] | ExcCodes:
        p, owner = self._owner.profile, self._owner
        ai_code = (
            _FC_READ_INPUT_REGISTERS if p.ai_function == "input_registers" else _FC_READ_HOLDING
        )
        start = address - p.ai_address
        if func_code == ai_code and start >= 0 and start + count <= p.ai_count:
            return owner.analog[start : start + count]
        word = p.do_function == "word" and func_code != _FC_READ_INPUT_REGISTERS
        if word and address == p.do_word_address and count == 1:
            return [sum(1 << ch for ch, on in enumerate(owner.outputs) if on)]
        return ExcCodes.ILLEGAL_ADDRESS

    def _bit(self, address: int, coils: bool) -> bool:
        p = self._owner.profile
        outputs = p.do_function == "coil" and p.do_address <= address < p.do_address + p.do_count
        if coils and outputs:
            return self._owner.output(address - p.do_address)
        if p.di_address <= address < p.di_address + p.di_count:
            return self._owner.wire_input(address - p.di_address)
        return False

    def _no_answer(self) -> NoReturn:
        """Give this request no answer at all (pymodbus skips unknown units)."""
        self._owner.unanswered()
        raise NoSuchIdException("no answer")

    async def _enter(self) -> ExcCodes | None:
        """Once per request (a write touches the memory twice): take the line, wait
        ``delay_s``, and go silent when the module is.

        Returns:
            The exception a converter answers for a silent unit, or None.
        """
        task = asyncio.current_task()
        if task is None or task in self._entered:
            return None
        self._entered.add(task)
        owner = self._owner
        line = owner.line
        if line is None:
            if owner.delay_s > 0:
                await asyncio.sleep(owner.delay_s)
            if not owner.answering:
                self._no_answer()
            return None
        async with line.lock:  # one request at a time on the RS-485 side
            if owner.answering:
                if owner.delay_s > 0:
                    await asyncio.sleep(owner.delay_s)
                return None
            if line.serial_port is not None:
                self._no_answer()
            await asyncio.sleep(line.converter_timeout_s)  # the converter waits in vain
        if line.gateway_exceptions:
            return ExcCodes.GATEWAY_NO_RESPONSE
        self._no_answer()
