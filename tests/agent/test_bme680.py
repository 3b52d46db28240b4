"""The bme680 collector through Adafruit's real driver, over a simulated I2C bus
that implements the chip's registers. The expected values come from the float
compensation formulas in Bosch's BME680 datasheet (section 3.3), computed here
independently of the driver (which uses Bosch's integer formulas)."""

from __future__ import annotations

import math

import pytest
from homepot_agent.lab import LabContext, LabScheduler, bme680
from homepot_agent.lab.iaq import iaq

from .helpers import Clock
from .i2c_sim import Bme680Calibration, SimBme680, SimI2C

pytest.importorskip("adafruit_bme680")

# const_array1 and const_array2 of the datasheet's gas formula (section 3.4.1)
GAS_CONST1 = [1, 1, 1, 1, 1, 0.99, 1, 0.992, 1, 1, 0.998, 0.995, 1, 0.99, 1, 1]
GAS_CONST2 = [
    8000000, 4000000, 2000000, 1000000, 499500.4995, 248262.1648, 125000, 63004.03226,
    31281.28128, 15625, 7812.5, 3906.25, 1953.125, 976.5625, 488.28125, 244.140625,
]  # fmt: skip


def datasheet_values(chip: SimBme680) -> dict[str, float]:
    c = chip.calibration
    t_adc, p_adc, h_adc = chip.temp_adc, chip.press_adc, chip.hum_adc
    # temperature
    var1 = ((t_adc / 16384.0) - (c.par_t1 / 1024.0)) * c.par_t2
    var2 = ((t_adc / 131072.0) - (c.par_t1 / 8192.0)) ** 2 * (c.par_t3 * 16.0)
    t_fine = var1 + var2
    temp = t_fine / 5120.0
    # pressure (Pa)
    var1 = (t_fine / 2.0) - 64000.0
    var2 = var1 * var1 * (c.par_p6 / 131072.0)
    var2 = var2 + (var1 * c.par_p5 * 2.0)
    var2 = (var2 / 4.0) + (c.par_p4 * 65536.0)
    var1 = (((c.par_p3 * var1 * var1) / 16384.0) + (c.par_p2 * var1)) / 524288.0
    var1 = (1.0 + (var1 / 32768.0)) * c.par_p1
    press = 1048576.0 - p_adc
    press = ((press - (var2 / 4096.0)) * 6250.0) / var1
    var1 = (c.par_p9 * press * press) / 2147483648.0
    var2 = press * (c.par_p8 / 32768.0)
    var3 = (press / 256.0) ** 3 * (c.par_p10 / 131072.0)
    press = press + (var1 + var2 + var3 + (c.par_p7 * 128.0)) / 16.0
    # humidity (%RH)
    var1 = h_adc - ((c.par_h1 * 16.0) + ((c.par_h3 / 2.0) * temp))
    var2 = var1 * (
        (c.par_h2 / 262144.0)
        * (1.0 + ((c.par_h4 / 16384.0) * temp) + ((c.par_h5 / 1048576.0) * temp * temp))
    )
    var3 = c.par_h6 / 16384.0
    var4 = c.par_h7 / 2097152.0
    hum = var2 + ((var3 + (var4 * temp)) * var2 * var2)
    # gas resistance (ohm)
    var1 = (1340.0 + 5.0 * c.range_switching_error) * GAS_CONST1[chip.gas_range]
    gas = var1 * GAS_CONST2[chip.gas_range] / (chip.gas_adc - 512.0 + var1)
    return {"temperature": temp, "pressure": press / 100.0, "humidity": hum, "gas": gas}


def source_on(chip: SimBme680, clock: Clock, **table: object) -> bme680.Bme680Source:
    settings = bme680.parse({"address": 0x76, **table})
    context = LabContext(clock=clock, buses={"bme680": SimI2C({0x76: chip})})
    return bme680.build(settings, context)


def test_the_driver_turns_the_raw_readings_into_the_datasheet_values():
    chip = SimBme680()
    clock = Clock()
    source = source_on(chip, clock, sea_level_hpa=1020.0)
    expected = datasheet_values(chip)

    source.open()
    metrics = source.read()

    assert 20 < expected["temperature"] < 30 and 900 < expected["pressure"] < 1100  # plausible
    assert metrics["bme680.temperature"] == pytest.approx(expected["temperature"], abs=0.01)
    assert metrics["bme680.pressure"] == pytest.approx(expected["pressure"], abs=0.05)
    assert metrics["bme680.humidity"] == pytest.approx(expected["humidity"], abs=0.05)
    assert metrics["bme680.gas_resistance"] == pytest.approx(expected["gas"], rel=0.001)
    altitude = 44330.0 * (1 - (metrics["bme680.pressure"] / 1020.0) ** 0.1903)
    assert metrics["bme680.altitude"] == pytest.approx(altitude)
    assert chip.measurements == 1  # one forced measurement serves every value


def test_other_raw_readings_and_a_calibration_whose_humidity_nibbles_differ():
    # par_h1 and par_h2 share register 0xE2; the driver alone swaps their nibbles
    chip = SimBme680(Bme680Calibration(par_t2=26000, par_h1=0x2BC, par_h2=0x3E5))
    chip.temp_adc, chip.press_adc, chip.hum_adc = 480_000, 420_000, 24_000
    chip.gas_adc, chip.gas_range = 700, 6
    source = source_on(chip, Clock())
    expected = datasheet_values(chip)

    source.open()
    metrics = source.read()

    assert metrics["bme680.temperature"] == pytest.approx(expected["temperature"], abs=0.01)
    assert metrics["bme680.pressure"] == pytest.approx(expected["pressure"], abs=0.05)
    assert metrics["bme680.humidity"] == pytest.approx(expected["humidity"], abs=0.05)
    assert metrics["bme680.gas_resistance"] == pytest.approx(expected["gas"], rel=0.001)


def test_iaq_is_reported_after_burn_in_against_the_learned_baseline():
    chip = SimBme680()
    clock = Clock()
    source = source_on(chip, clock, iaq_burn_in=60, interval=10)
    source.open()

    first = source.read()
    assert "bme680.iaq" not in first  # the baseline is still being learned
    readings = []
    for _ in range(6):
        clock.now += 10
        readings.append(source.read())
    baseline = first["bme680.gas_resistance"]  # the same air throughout
    assert readings[-1]["bme680.iaq"] == pytest.approx(
        iaq(baseline, readings[-1]["bme680.humidity"], baseline)
    )

    chip.gas_adc = 900  # a lower resistance: worse air
    clock.now += 10
    worse = source.read()
    assert worse["bme680.gas_resistance"] < baseline
    assert worse["bme680.iaq"] > readings[-1]["bme680.iaq"]
    assert chip.measurements == 8  # one fresh measurement per reading


def test_iaq_by_hand():
    # clean air at the 40 %RH optimum: 0; half the baseline resistance at 40 %RH: the
    # gas part (75 %) is half gone: (100 - (25 + 37.5)) * 5
    assert iaq(100_000, 40.0, 100_000) == 0
    assert iaq(50_000, 40.0, 100_000) == pytest.approx(187.5)
    # 70 %RH: humidity score (60 - 30) / 60 * 25 = 12.5
    assert iaq(100_000, 70.0, 100_000) == pytest.approx(62.5)
    assert math.isclose(iaq(0.0, 0.0, 100_000), 500.0)


def test_a_wrong_chip_id_or_a_missing_chip_is_bme680_up_0():
    clock = Clock()
    chip = SimBme680()
    chip.registers[0xD0] = 0x60  # a BMP280 answering at that address
    wrong = source_on(chip, clock)
    settings = bme680.parse({"address": 0x77})
    missing = bme680.build(settings, LabContext(clock=clock, buses={"bme680": SimI2C({})}))

    assert LabScheduler([(wrong, 10.0)], clock).collect_due(clock()) == {"bme680.up": 0.0}
    assert LabScheduler([(missing, 10.0)], clock).collect_due(clock()) == {"bme680.up": 0.0}


def test_the_address_must_be_one_the_chip_can_have():
    with pytest.raises(ValueError, match="address"):
        bme680.parse({"address": 0x68})
