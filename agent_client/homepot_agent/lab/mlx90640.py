"""MLX90640 32x24 thermal camera through Adafruit's driver.

Every frame goes to the server's thermal-frames endpoint; its summary becomes
``thermal.min/max/mean/hotspot_x/hotspot_y`` (the hot spot is the column and
row, from 0, of the hottest pixel). Frames go every ``interval`` seconds, and
faster while the server advises it (``X-Thermal-Interval`` for ``X-Thermal-Lease``
seconds: an operator watches the live view): never faster than the sensor's
``refresh_rate`` nor 4 Hz.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from homepot_agent.lab import LabContext, integer, no_unknown_keys, positive

NAME = "mlx90640"
WIDTH, HEIGHT = 32, 24
REFRESH_RATES = (1, 2, 4, 8, 16, 32, 64)  # Hz, what the chip offers (0.5 Hz is left out)
MAX_LIVE_HZ = 4.0


@dataclass(frozen=True)
class Settings:
    i2c_bus: int = 1
    refresh_rate: int = 4
    interval: float = 60.0


def parse(table: dict[str, Any]) -> Settings:
    no_unknown_keys(table, {"i2c_bus", "refresh_rate", "interval"})
    defaults = Settings()
    return Settings(
        i2c_bus=integer(table, "i2c_bus", defaults.i2c_bus, range(0, 256)),
        refresh_rate=integer(table, "refresh_rate", defaults.refresh_rate, REFRESH_RATES),
        interval=positive(table, "interval", defaults.interval),
    )


def summary(values: list[float], width: int = WIDTH) -> dict[str, float]:
    """min, max, mean and the hottest pixel's column and row (the first one on a tie)."""
    hottest = max(range(len(values)), key=values.__getitem__)
    return {
        "thermal.min": min(values),
        "thermal.max": values[hottest],
        "thermal.mean": sum(values) / len(values),
        "thermal.hotspot_x": float(hottest % width),
        "thermal.hotspot_y": float(hottest // width),
    }


class Mlx90640Source:
    name = NAME

    def __init__(self, settings: Settings, context: LabContext) -> None:
        self.settings = settings
        self.context = context
        self.camera: Any = None
        self.i2c: Any = None
        self.fast_interval = settings.interval
        self.lease_until = float("-inf")

    @property
    def min_interval(self) -> float:
        return 1.0 / min(float(self.settings.refresh_rate), MAX_LIVE_HZ)

    def open(self) -> None:
        camera = self.context.buses.get(NAME)  # tests: an object with getFrame()
        if camera is None:
            camera = self._open_driver()
        self.camera = camera

    def _open_driver(self) -> Any:
        import adafruit_mlx90640  # the lab extra

        from homepot_agent.lab.i2c import SMBusI2C

        self.i2c = SMBusI2C(self.settings.i2c_bus)
        camera = adafruit_mlx90640.MLX90640(self.i2c)
        rate = {
            hz: getattr(adafruit_mlx90640.RefreshRate, f"REFRESH_{hz}_HZ")
            for hz in (1, 2, 4, 8, 16, 32, 64)
        }
        camera.refresh_rate = rate[self.settings.refresh_rate]
        return camera

    def read(self) -> dict[str, float]:
        frame = [0.0] * (WIDTH * HEIGHT)
        self.camera.getFrame(frame)  # blocks until the sensor has a new frame
        stamp = datetime.fromtimestamp(self.context.wall_clock(), tz=timezone.utc)
        self.context.send_frame(
            {"ts": stamp.isoformat(), "width": WIDTH, "height": HEIGHT, "values": frame}
        )
        return summary(frame)

    def close(self) -> None:
        self.camera = None
        if self.i2c is not None:
            self.i2c.deinit()
        self.i2c = None

    # --- the live view ------------------------------------------------------------------

    def advise_thermal(self, interval: float, lease: float, now: float) -> None:
        self.fast_interval = max(interval, self.min_interval)
        self.lease_until = now + lease

    def interval_at(self, now: float) -> float:
        """The fast rate while a lease holds, the configured interval after it."""
        if now < self.lease_until:
            return min(self.fast_interval, self.settings.interval)
        return self.settings.interval


def build(settings: Settings, context: LabContext) -> Mlx90640Source:
    return Mlx90640Source(settings, context)
