"""MCP3424 18-bit delta-sigma ADC (four channels) over smbus2: metrics ``adc.<name>``.

Each channel is converted one-shot: write the configuration byte (RDY=1 starts a
conversion), wait for the conversion, read 3 bytes (12/14/16 bits: two data bytes
and the config byte) or 4 (18 bits) until RDY reads 0. The code is two's
complement; volts = code * LSB / gain with LSB = 2 * 2.048 V / 2**bits, and the
metric is volts * scale + offset (a divider, a shunt into amps, ...).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homepot_agent.lab import LabContext, integer, no_unknown_keys, positive

NAME = "mcp3424"
ADDRESSES = range(0x68, 0x70)  # A0/A1 pins select one of eight
RATE_BITS = {12: 0b00, 14: 0b01, 16: 0b10, 18: 0b11}
SAMPLES_PER_SECOND = {12: 240.0, 14: 60.0, 16: 15.0, 18: 3.75}
GAIN_BITS = {1: 0b00, 2: 0b01, 4: 0b10, 8: 0b11}
REFERENCE = 2.048
READY_TRIES = 20  # re-reads of a conversion not finished yet, before giving up


@dataclass(frozen=True)
class Channel:
    channel: int  # 1..4, as printed on the chip
    name: str
    gain: int = 1
    resolution_bits: int = 18
    scale: float = 1.0
    offset: float = 0.0

    def config_byte(self) -> int:
        """RDY=1 (start), channel, one-shot, sample rate, gain."""
        return (
            0x80 | ((self.channel - 1) << 5) | (RATE_BITS[self.resolution_bits] << 2)
        ) | GAIN_BITS[self.gain]

    def volts(self, data: bytes) -> float:
        bits = self.resolution_bits
        code = int.from_bytes(data, "big") & ((1 << bits) - 1)
        if code >= 1 << (bits - 1):  # two's complement
            code -= 1 << bits
        return code * (2 * REFERENCE / 2**bits) / self.gain

    def value(self, data: bytes) -> float:
        return self.volts(data) * self.scale + self.offset


@dataclass(frozen=True)
class Settings:
    i2c_bus: int = 1
    address: int = 0x68
    interval: float = 10.0
    channels: tuple[Channel, ...] = ()


def _channel(index: int, raw: Any) -> Channel:
    if not isinstance(raw, dict):
        raise ValueError(f"channels[{index}]: must be a table")
    no_unknown_keys(raw, {"channel", "name", "gain", "resolution_bits", "scale", "offset"})
    name = raw.get("name")
    if not isinstance(name, str) or not name or not name.replace("_", "a").isalnum():
        raise ValueError(f"channels[{index}].name: letters, digits and _ only")
    offset = raw.get("offset", 0.0)
    if isinstance(offset, bool) or not isinstance(offset, (int, float)):
        raise ValueError(f"channels[{index}].offset: must be a number")
    scale = raw.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale == 0:
        raise ValueError(f"channels[{index}].scale: must be a number other than 0")
    try:
        return Channel(
            channel=integer(raw, "channel", 0, range(1, 5)),
            name=name,
            gain=integer(raw, "gain", 1, GAIN_BITS),
            resolution_bits=integer(raw, "resolution_bits", 18, RATE_BITS),
            scale=float(scale),
            offset=float(offset),
        )
    except ValueError as exc:
        raise ValueError(f"channels[{index}].{exc}") from None


def parse(table: dict[str, Any]) -> Settings:
    no_unknown_keys(table, {"i2c_bus", "address", "interval", "channels"})
    raw_channels = table.get("channels", [])
    if not isinstance(raw_channels, list) or len(raw_channels) > 4:
        raise ValueError("channels: a list of at most four channel tables")
    channels = tuple(_channel(i, raw) for i, raw in enumerate(raw_channels))
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        raise ValueError("channels: two channels have the same name")
    defaults = Settings()
    return Settings(
        i2c_bus=integer(table, "i2c_bus", defaults.i2c_bus, range(0, 256)),
        address=integer(table, "address", defaults.address, ADDRESSES),
        interval=positive(table, "interval", defaults.interval),
        channels=channels,
    )


class Mcp3424Source:
    name = NAME

    def __init__(
        self,
        settings: Settings,
        context: LabContext,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.context = context
        self.sleep = sleep
        self.bus: Any = None

    def open(self) -> None:
        self.bus = self.context.buses.get(NAME)
        if self.bus is None:
            from smbus2 import SMBus  # the lab extra

            self.bus = SMBus(self.settings.i2c_bus)

    def read(self) -> dict[str, float]:
        return {f"adc.{c.name}": c.value(self.convert(c)) for c in self.settings.channels}

    def convert(self, channel: Channel) -> bytes:
        """One one-shot conversion: the data bytes (without the config byte)."""
        from smbus2 import i2c_msg

        address = self.settings.address
        self.bus.i2c_rdwr(i2c_msg.write(address, [channel.config_byte()]))
        length = 4 if channel.resolution_bits == 18 else 3
        self.sleep(1.0 / SAMPLES_PER_SECOND[channel.resolution_bits])
        for _ in range(READY_TRIES):
            message = i2c_msg.read(address, length)
            self.bus.i2c_rdwr(message)
            data = bytes(message)
            if not data[-1] & 0x80:  # RDY 0: this is the new conversion
                return data[:-1]
            self.sleep(0.1 / SAMPLES_PER_SECOND[channel.resolution_bits])
        raise TimeoutError(f"channel {channel.channel}: conversion never finished")

    def close(self) -> None:
        if self.bus is not None and NAME not in self.context.buses:
            self.bus.close()
        self.bus = None


def build(settings: Settings, context: LabContext) -> Mcp3424Source:
    return Mcp3424Source(settings, context)
