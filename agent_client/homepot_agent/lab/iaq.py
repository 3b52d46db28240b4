"""An indoor-air-quality ESTIMATE from a BME680's gas resistance and humidity.

Bosch's BSEC library (the real IAQ) is closed, so this is the widely used open
approximation: during a burn-in the gas resistance settles and its mean becomes
the baseline (clean air: a higher resistance is cleaner); afterwards the baseline
follows any cleaner reading. The score weights humidity (best at 40 %RH) 25 % and
gas 75 %; the result runs from 0 (excellent) to 500 (very bad) like Bosch's IAQ
scale, but it is not calibrated against it.
"""

from __future__ import annotations

from collections.abc import Callable

HUMIDITY_BASELINE = 40.0  # %RH, the comfortable optimum
HUMIDITY_WEIGHT = 0.25


class IaqEstimator:
    def __init__(self, burn_in: float, clock: Callable[[], float]) -> None:
        self.burn_in = burn_in
        self.clock = clock
        self.started: float | None = None
        self.burn_in_samples: list[float] = []
        self.baseline: float | None = None

    def update(self, gas_resistance: float, humidity: float) -> float | None:
        """The IAQ estimate (0..500), or None while the baseline is still being learned."""
        now = self.clock()
        if self.started is None:
            self.started = now
        if self.baseline is None:
            self.burn_in_samples.append(gas_resistance)
            if now - self.started < self.burn_in:
                return None
            # the sensor's heater settles during burn-in: trust the later half
            settled = self.burn_in_samples[len(self.burn_in_samples) // 2 :]
            self.baseline = sum(settled) / len(settled)
            self.burn_in_samples = []
        self.baseline = max(self.baseline, gas_resistance)
        return iaq(gas_resistance, humidity, self.baseline)


def iaq(gas_resistance: float, humidity: float, baseline: float) -> float:
    """0 (excellent) .. 500 (very bad) from a gas resistance and its clean-air baseline."""
    offset = humidity - HUMIDITY_BASELINE
    if offset > 0:
        humidity_score = (100 - HUMIDITY_BASELINE - offset) / (100 - HUMIDITY_BASELINE)
    else:
        humidity_score = (HUMIDITY_BASELINE + offset) / HUMIDITY_BASELINE
    humidity_score = max(0.0, humidity_score) * HUMIDITY_WEIGHT * 100
    gas_score = min(1.0, gas_resistance / baseline) * (1 - HUMIDITY_WEIGHT) * 100
    return (100 - (humidity_score + gas_score)) * 5
