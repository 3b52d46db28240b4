"""BME680 / BME688 environmental sensor through Adafruit's driver:
``bme680.temperature`` °C, ``.humidity`` %RH, ``.pressure`` hPa,
``.gas_resistance`` Ω, ``.altitude`` m and ``.iaq`` (an estimate, see iaq.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from homepot_agent.lab import LabContext, integer, no_unknown_keys, positive
from homepot_agent.lab.iaq import IaqEstimator

NAME = "bme680"
ADDRESSES = (0x76, 0x77)


@dataclass(frozen=True)
class Settings:
    i2c_bus: int = 1
    address: int = 0x77
    interval: float = 10.0
    sea_level_hpa: float = 1013.25
    iaq_burn_in: float = 300.0  # seconds of gas readings that make the IAQ baseline


def parse(table: dict[str, Any]) -> Settings:
    no_unknown_keys(table, {"i2c_bus", "address", "interval", "sea_level_hpa", "iaq_burn_in"})
    defaults = Settings()
    return Settings(
        i2c_bus=integer(table, "i2c_bus", defaults.i2c_bus, range(0, 256)),
        address=integer(table, "address", defaults.address, ADDRESSES),
        interval=positive(table, "interval", defaults.interval),
        sea_level_hpa=positive(table, "sea_level_hpa", defaults.sea_level_hpa),
        iaq_burn_in=positive(table, "iaq_burn_in", defaults.iaq_burn_in),
    )


def altitude(pressure_hpa: float, sea_level_hpa: float) -> float:
    """The international barometric formula (the one the driver uses)."""
    return 44330.0 * (1.0 - math.pow(pressure_hpa / sea_level_hpa, 0.1903))


def _fix_humidity_calibration(sensor: Any) -> None:
    """Decode par_h1 and par_h2 as Bosch's reference API does.

    Register 0xE2 holds the low nibbles of both: bits 3:0 belong to par_h1 (MSB
    in 0xE3), bits 7:4 to par_h2 (MSB in 0xE1). adafruit-circuitpython-bme680
    3.7.16 swaps them (and leaves a fraction in par_h1), which moves humidity by
    up to a few %RH on a chip whose two nibbles differ (tests/agent/test_bme680.py).
    """
    e1, e2, e3 = sensor._read(0xE1, 3)
    sensor._humidity_calibration[0] = float((e3 << 4) | (e2 & 0x0F))
    sensor._humidity_calibration[1] = float((e1 << 4) | (e2 >> 4))


class Bme680Source:
    name = NAME

    def __init__(self, settings: Settings, context: LabContext) -> None:
        self.settings = settings
        self.context = context
        self.sensor: Any = None
        self.i2c: Any = None
        self.iaq = IaqEstimator(settings.iaq_burn_in, context.clock)

    def open(self) -> None:
        import adafruit_bme680  # the lab extra

        self.i2c = self.context.buses.get(NAME)
        if self.i2c is None:
            from homepot_agent.lab.i2c import SMBusI2C

            self.i2c = SMBusI2C(self.settings.i2c_bus)
        # A property measures again only when the last measurement is older than
        # 1/refresh_rate (1 s): read() starts a fresh one and the others reuse it.
        self.sensor = adafruit_bme680.Adafruit_BME680_I2C(
            self.i2c, self.settings.address, refresh_rate=1
        )
        self.sensor.sea_level_pressure = self.settings.sea_level_hpa
        _fix_humidity_calibration(self.sensor)

    def read(self) -> dict[str, float]:
        sensor = self.sensor
        sensor._last_reading = 0  # one fresh measurement per read(), whatever the interval
        temperature = float(sensor.temperature)  # measures; the others reuse it
        humidity = float(sensor.humidity)
        pressure = float(sensor.pressure)
        gas = float(sensor.gas)
        metrics = {
            "bme680.temperature": temperature,
            "bme680.humidity": humidity,
            "bme680.pressure": pressure,
            "bme680.gas_resistance": gas,
            "bme680.altitude": altitude(pressure, self.settings.sea_level_hpa),
        }
        estimate = self.iaq.update(gas, humidity)
        if estimate is not None:
            metrics["bme680.iaq"] = estimate
        return metrics

    def close(self) -> None:
        self.sensor = None
        if self.i2c is not None and NAME not in self.context.buses:
            self.i2c.deinit()
        self.i2c = None


def build(settings: Settings, context: LabContext) -> Bme680Source:
    return Bme680Source(settings, context)
