"""A busio.I2C-like object over a Linux I2C bus number (smbus2), for the Adafruit
drivers: it needs no Blinka board detection, and lets ``i2c_bus`` pick the bus."""

from __future__ import annotations

from typing import Any


class SMBusI2C:
    """The part of busio.I2C the Adafruit drivers use (through adafruit_bus_device)."""

    def __init__(self, bus: int) -> None:
        from smbus2 import SMBus  # the lab extra; imported only when an instrument opens

        self.bus = SMBus(bus)

    def try_lock(self) -> bool:
        return True  # one thread reads the instruments; the kernel serialises transfers

    def unlock(self) -> None:
        pass

    def writeto(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None:
        from smbus2 import i2c_msg

        data = bytes(buffer[start:end])
        if data:
            self.bus.i2c_rdwr(i2c_msg.write(address, data))
        else:  # a probe: an empty write is not possible through i2c_rdwr on every adapter
            self.bus.read_byte(address)

    def readfrom_into(
        self, address: int, buffer: Any, *, start: int = 0, end: int | None = None
    ) -> None:
        from smbus2 import i2c_msg

        end = len(buffer) if end is None else end
        message = i2c_msg.read(address, end - start)
        self.bus.i2c_rdwr(message)
        buffer[start:end] = bytes(message)

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
        from smbus2 import i2c_msg

        in_end = len(buffer_in) if in_end is None else in_end
        write = i2c_msg.write(address, bytes(buffer_out[out_start:out_end]))
        read = i2c_msg.read(address, in_end - in_start)
        self.bus.i2c_rdwr(write, read)  # one transfer: a repeated start, no stop between
        buffer_in[in_start:in_end] = bytes(read)

    def deinit(self) -> None:
        self.bus.close()
