"""The mcp3424 collector over a register-level simulated MCP3424 (smbus2's own
i2c_msg objects through a simulated SMBus), against hand-computed values."""

from __future__ import annotations

import pytest
from homepot_agent.lab import LabContext, LabScheduler, mcp3424

from .helpers import Clock
from .i2c_sim import SimMcp3424, SimSMBus

pytest.importorskip("smbus2")


def source_for(chip: SimMcp3424, channels: list[dict], address: int = 0x6A):
    settings = mcp3424.parse({"address": address, "channels": channels})
    bus = SimSMBus({address: chip})
    source = mcp3424.Mcp3424Source(
        settings, LabContext(buses={"mcp3424": bus}), sleep=lambda seconds: None
    )
    return source, bus


def test_channels_are_converted_scaled_and_named():
    chip = SimMcp3424({1: 1.0, 2: 0.0125, 3: -0.5, 4: 0.3})
    source, bus = source_for(
        chip,
        [
            # a 1:11 divider on the supply: 1.0 V at the pin is 11 V
            {"channel": 1, "name": "supply_voltage", "resolution_bits": 16, "scale": 11.0},
            # a 0.1 ohm shunt at gain 8: 12.5 mV is 125 mA
            {"channel": 2, "name": "board_current", "gain": 8, "scale": 10.0},
            {"channel": 3, "name": "negative", "resolution_bits": 12},
            {"channel": 4, "name": "offset", "resolution_bits": 14, "offset": -0.1},
        ],
    )
    source.open()

    metrics = source.read()

    # 16 bits: LSB = 4.096 / 65536 = 62.5 uV; 1.0 V = code 16000 -> 1.0 V * 11
    assert metrics["adc.supply_voltage"] == pytest.approx(11.0)
    # 18 bits, gain 8: LSB = 15.625 uV; 12.5 mV * 8 = 0.1 V = code 6400 -> 6400 * 15.625e-6 / 8
    assert metrics["adc.board_current"] == pytest.approx(0.125)
    # 12 bits: LSB = 1 mV; -0.5 V = code -500 (two's complement 0xFE0C)
    assert metrics["adc.negative"] == pytest.approx(-0.5)
    # 14 bits: LSB = 250 uV; 0.3 V = code 1200; then + offset
    assert metrics["adc.offset"] == pytest.approx(0.2)
    writes = [data for kind, _, data in bus.transfers if kind == "write"]
    # RDY | channel | one-shot | rate | gain, per the datasheet's configuration register
    assert writes == [bytes([0x88]), bytes([0xAF]), bytes([0xC0]), bytes([0xE4])]
    reads = [data for kind, _, data in bus.transfers if kind == "read"]
    assert reads[2][:2] == bytes([0xFE, 0x0C])  # -500 as the chip sends it
    assert [len(r) for r in reads] == [3, 4, 3, 3]  # 4 bytes only at 18 bits


def test_a_conversion_not_finished_is_read_again_until_ready():
    chip = SimMcp3424({1: 0.25})
    chip.slow_reads = 3  # RDY stays 1 for three reads
    source, bus = source_for(chip, [{"channel": 1, "name": "v", "resolution_bits": 18}])
    source.open()

    assert source.read() == {"adc.v": pytest.approx(0.25)}
    assert sum(1 for kind, _, _ in bus.transfers if kind == "read") == 4


def test_a_chip_that_never_finishes_or_is_absent_is_mcp3424_up_0():
    clock = Clock()
    stuck = SimMcp3424({1: 0.25})
    stuck.slow_reads = 1000
    source, _ = source_for(stuck, [{"channel": 1, "name": "v"}])
    absent, _ = source_for(SimMcp3424({1: 0.0}), [{"channel": 1, "name": "v"}], address=0x6B)
    absent.context.buses["mcp3424"] = SimSMBus({})

    assert LabScheduler([(source, 1.0)], clock).collect_due(clock()) == {"mcp3424.up": 0.0}
    assert LabScheduler([(absent, 1.0)], clock).collect_due(clock()) == {"mcp3424.up": 0.0}


def test_full_scale_saturates_at_the_largest_code():
    chip = SimMcp3424({1: 5.0})
    source, _ = source_for(chip, [{"channel": 1, "name": "v", "resolution_bits": 12}])
    source.open()

    assert source.read()["adc.v"] == pytest.approx(2047 * 0.001)


@pytest.mark.parametrize(
    "channels, message",
    [
        ([{"channel": 5, "name": "v"}], r"channels\[0\]\.channel"),
        ([{"channel": 1, "name": "v", "resolution_bits": 10}], "resolution_bits"),
        ([{"channel": 1, "name": "v", "gain": 3}], "gain"),
        ([{"channel": 1, "name": "bad name"}], "name"),
        ([{"channel": 1, "name": "v"}, {"channel": 2, "name": "v"}], "same name"),
        ([{"channel": i, "name": f"c{i}"} for i in (1, 2, 3, 4, 1)], "at most four"),
    ],
)
def test_bad_channel_tables_are_refused(channels, message):
    with pytest.raises(ValueError, match=message):
        mcp3424.parse({"channels": channels})
