"""A simulated I2C bus for the lab collectors' tests, at the register level.

``SimI2C`` has the busio.I2C interface the Adafruit drivers use (through
adafruit_bus_device); ``SimSMBus`` has the part of smbus2.SMBus the MCP3424
collector uses (``i2c_rdwr`` with smbus2's own i2c_msg objects). Both reach the
simulated chips by address; an address nobody answers is an OSError, as on a
real bus (errno 121, Remote I/O error).
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import Any


def _no_device(address: int) -> OSError:
    return OSError(errno.EREMOTEIO, f"no device at 0x{address:02x}")


class Chip:
    """A chip on the bus: takes written bytes, gives read bytes."""

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, length: int) -> bytes:
        raise NotImplementedError


class SimI2C:
    """busio.I2C-like: try_lock/unlock/writeto/readfrom_into/writeto_then_readfrom."""

    def __init__(self, chips: dict[int, Chip]) -> None:
        self.chips = chips
        self.locked = False
        self.deinited = False

    def try_lock(self) -> bool:
        if self.locked:
            return False
        self.locked = True
        return True

    def unlock(self) -> None:
        self.locked = False

    def _chip(self, address: int) -> Chip:
        assert self.locked, "the driver must lock the bus first"
        chip = self.chips.get(address)
        if chip is None:
            raise _no_device(address)
        return chip

    def writeto(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None:
        self._chip(address).write(bytes(buffer[start:end]))

    def readfrom_into(
        self, address: int, buffer: Any, *, start: int = 0, end: int | None = None
    ) -> None:
        end = len(buffer) if end is None else end
        buffer[start:end] = self._chip(address).read(end - start)

    def writeto_then_readfrom(
        self,
        address: int,
        buffer_out: Any,
        buffer_in: Any,
        *,
        out_start: int = 0,
        out_end: int | None = None,
        in_start: int = 0,
        in_end: int | None = None,
    ) -> None:
        self.writeto(address, buffer_out, start=out_start, end=out_end)
        self.readfrom_into(address, buffer_in, start=in_start, end=in_end)

    def deinit(self) -> None:
        self.deinited = True


class SimSMBus:
    """smbus2.SMBus-like: i2c_rdwr(*i2c_msg) over the same chips."""

    I2C_M_RD = 0x0001

    def __init__(self, chips: dict[int, Chip]) -> None:
        self.chips = chips
        self.transfers: list[tuple[str, int, bytes]] = []
        self.closed = False

    def i2c_rdwr(self, *messages: Any) -> None:
        for message in messages:
            chip = self.chips.get(message.addr)
            if chip is None:
                raise _no_device(message.addr)
            if message.flags & self.I2C_M_RD:
                data = chip.read(message.len)
                for i, byte in enumerate(data):
                    message.buf[i] = bytes([byte])
                self.transfers.append(("read", message.addr, data))
            else:
                data = bytes(message)
                chip.write(data)
                self.transfers.append(("write", message.addr, data))

    def close(self) -> None:
        self.closed = True


class RegisterChip(Chip):
    """256 byte-wide registers; a write is a register address and then values for
    that register and the following ones; a read continues from the address."""

    def __init__(self) -> None:
        self.registers = bytearray(256)
        self.pointer = 0

    def write(self, data: bytes) -> None:
        if not data:
            return  # a probe
        self.pointer = data[0]
        for offset, value in enumerate(data[1:]):
            self.store(data[0] + offset, value)

    def store(self, register: int, value: int) -> None:
        self.registers[register] = value

    def read(self, length: int) -> bytes:
        start = self.pointer
        return bytes(self.registers[(start + i) & 0xFF] for i in range(length))


# --- BME680 ------------------------------------------------------------------------------


@dataclass
class Bme680Calibration:
    """The calibration parameters, named as in Bosch's BME680 datasheet (section 5.3.2)."""

    par_t1: int = 26148
    par_t2: int = 26349
    par_t3: int = 3
    par_p1: int = 36318
    par_p2: int = -10428
    par_p3: int = 88
    par_p4: int = 6917
    par_p5: int = -97
    par_p6: int = 30
    par_p7: int = 38
    par_p8: int = -2133
    par_p9: int = -2637
    par_p10: int = 30
    par_h1: int = 720  # 12 bits
    par_h2: int = 1008  # 12 bits
    par_h3: int = 0
    par_h4: int = 45
    par_h5: int = 20
    par_h6: int = 120
    par_h7: int = -100
    par_gh1: int = -37
    par_gh2: int = -11464
    par_gh3: int = 18
    res_heat_range: int = 1
    res_heat_val: int = 47
    range_switching_error: int = 1


class SimBme680(RegisterChip):
    """A BME680 in forced mode, its registers laid out as in the datasheet (memory
    map, section 5.2): chip id 0x61 at 0xD0, the calibration block at 0x89..0xA1
    and 0xE1..0xEE, status and the raw ADC values from 0x1D. Writing forced mode
    (01) to ctrl_meas (0x74) "measures": the raw values below appear with
    new_data_0 set, and the chip goes back to sleep."""

    CHIP_ID = 0x61

    def __init__(self, calibration: Bme680Calibration | None = None) -> None:
        super().__init__()
        self.calibration = calibration or Bme680Calibration()
        self.temp_adc = 500_000  # 20 bits
        self.press_adc = 400_000  # 20 bits
        self.hum_adc = 20_000  # 16 bits
        self.gas_adc = 300  # 10 bits
        self.gas_range = 4
        self.measurements = 0
        self.registers[0xD0] = self.CHIP_ID
        self.registers[0xF0] = 0x00  # variant: BME680 (gas "low")
        self._write_calibration()

    def _write_calibration(self) -> None:
        c, r = self.calibration, self.registers

        def put(fmt: str, address: int, value: int) -> None:
            packed = struct.pack("<" + fmt, value)
            r[address : address + len(packed)] = packed

        put("H", 0xE9, c.par_t1)
        put("h", 0x8A, c.par_t2)
        put("b", 0x8C, c.par_t3)
        put("H", 0x8E, c.par_p1)
        put("h", 0x90, c.par_p2)
        put("b", 0x92, c.par_p3)
        put("h", 0x94, c.par_p4)
        put("h", 0x96, c.par_p5)
        put("b", 0x99, c.par_p6)
        put("b", 0x98, c.par_p7)
        put("h", 0x9C, c.par_p8)
        put("h", 0x9E, c.par_p9)
        put("B", 0xA0, c.par_p10)
        # par_h1: 0xE3 <7:0> = bits 11:4, 0xE2 <3:0> = bits 3:0
        # par_h2: 0xE1 <7:0> = bits 11:4, 0xE2 <7:4> = bits 3:0
        r[0xE3] = c.par_h1 >> 4
        r[0xE1] = c.par_h2 >> 4
        r[0xE2] = ((c.par_h2 & 0x0F) << 4) | (c.par_h1 & 0x0F)
        put("b", 0xE4, c.par_h3)
        put("b", 0xE5, c.par_h4)
        put("b", 0xE6, c.par_h5)
        put("B", 0xE7, c.par_h6)
        put("b", 0xE8, c.par_h7)
        put("b", 0xED, c.par_gh1)
        put("h", 0xEB, c.par_gh2)
        put("b", 0xEE, c.par_gh3)
        r[0x02] = (c.res_heat_range & 0x03) << 4
        r[0x00] = c.res_heat_val
        r[0x04] = (c.range_switching_error & 0x0F) << 4

    def store(self, register: int, value: int) -> None:
        if register == 0xE0 and value == 0xB6:  # soft reset
            self.registers[0x74] = 0
            return
        super().store(register, value)
        if register == 0x74 and value & 0x03 == 0x01:  # forced mode: one measurement
            self._measure()

    def _measure(self) -> None:
        r = self.registers
        r[0x1F:0x22] = (self.press_adc << 4).to_bytes(3, "big")  # press_msb/lsb/xlsb
        r[0x22:0x25] = (self.temp_adc << 4).to_bytes(3, "big")
        r[0x25:0x27] = self.hum_adc.to_bytes(2, "big")
        # gas_r: 10 bits, then gas_valid_r (bit 5), heat_stab_r (bit 4), gas_range_r
        r[0x2A:0x2C] = ((self.gas_adc << 6) | 0x20 | 0x10 | self.gas_range).to_bytes(2, "big")
        r[0x1D] = 0x80  # new_data_0
        r[0x74] &= 0xFC  # back to sleep, as the chip does after a forced measurement
        self.measurements += 1


# --- MCP3424 -----------------------------------------------------------------------------


class SimMcp3424(Chip):
    """An MCP3424: a write is the configuration byte (RDY=1 starts a one-shot
    conversion of the selected channel); a read gives the output code (2 bytes, 3
    at 18 bits) and the configuration byte, RDY 0 once the conversion is done.
    ``volts`` are the inputs; the code follows the datasheet (section 4.9)."""

    def __init__(self, volts: dict[int, float]) -> None:
        self.volts = volts  # channel 1..4 -> differential input volts
        self.config = 0x90  # power-on default: channel 1, continuous, 12 bits, x1
        self.pending_reads = 0  # reads that still see RDY=1 (a slow conversion)
        self.slow_reads = 0
        self.code = 0

    def write(self, data: bytes) -> None:
        self.config = data[-1]
        if self.config & 0x80:
            self.code = self._convert()
            self.pending_reads = self.slow_reads

    @property
    def bits(self) -> int:
        return (12, 14, 16, 18)[(self.config >> 2) & 0x03]

    def _convert(self) -> int:
        channel = ((self.config >> 5) & 0x03) + 1
        gain = (1, 2, 4, 8)[self.config & 0x03]
        lsb = 2 * 2.048 / 2**self.bits
        code = round(self.volts[channel] * gain / lsb)
        limit = 2 ** (self.bits - 1)
        return max(-limit, min(limit - 1, code))

    def read(self, length: int) -> bytes:
        data_bytes = 3 if self.bits == 18 else 2
        code = self.code & ((1 << (8 * data_bytes)) - 1)  # two's complement, sign-extended
        ready = 0x80 if self.pending_reads > 0 else 0x00
        self.pending_reads = max(0, self.pending_reads - 1)
        config = (self.config & 0x7F) | ready
        return (code.to_bytes(data_bytes, "big") + bytes([config, config]))[:length]
