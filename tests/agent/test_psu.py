"""The PSU driver and the psu collector over a real serial line: pyserial on
one end of a pty pair, the SCPI emulator on the other."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from homepot_agent.config import load_config, save_config
from homepot_agent.lab import Guarded, LabContext
from homepot_agent.lab.psu import Psu, PsuError, PsuLimitError, PsuSettings, build, parse

from analytics.models import LatestValue
from tests.agent.helpers import Clock, start_agent
from tests.agent.scpi_emulator import ScpiEmulator


@pytest.fixture
def emulator(tmp_path):
    instrument = ScpiEmulator(tmp_path / "ttyPSU")
    yield instrument
    instrument.close()


def collector(psu: Psu) -> Guarded:
    """The psu collector as the agent's lab framework runs it."""
    return Guarded(build(psu.settings, LabContext(buses={"psu": psu})))


def make_psu(emulator: ScpiEmulator, **changes) -> Psu:
    values = {"port": str(emulator.link), "timeout": 0.3, "max_voltage": 12, "max_current": 2}
    psu = Psu(PsuSettings(**{**values, **changes}))
    return psu


@pytest.fixture
def psu(emulator):
    driver = make_psu(emulator)
    yield driver
    driver.close()


def test_it_reads_identity_and_values(emulator, psu):
    emulator.voltage, emulator.current, emulator.output = 5.0, 0.3, True

    assert psu.identify() == "HOMEPOT,EMU-PSU,0001,1.0"
    assert psu.read() == {
        "psu.voltage": 3.0,  # 10 ohm load, limited to 0.3 A
        "psu.current": 0.3,
        "psu.power": pytest.approx(0.9),
        "psu.output": 1.0,
        "psu.voltage_set": 5.0,
        "psu.current_limit": 0.3,
    }


def test_it_sets_voltage_and_current_and_reads_them_back(emulator, psu):
    held = psu.set(voltage=5.5, current=0.25)

    assert held == {"voltage_set": 5.5, "current_limit": 0.25}
    assert emulator.sent() == ["VOLT 5.5000", "CURR 0.2500"]
    assert (emulator.voltage, emulator.current) == (5.5, 0.25)


def test_it_sets_only_what_it_is_given(emulator, psu):
    psu.set(current=1.5)

    assert emulator.sent() == ["CURR 1.5000"]


@pytest.mark.parametrize("words", [False, True], ids=["1/0", "ON/OFF"])
def test_it_switches_the_output_and_accepts_both_answers(tmp_path, words):
    emulator = ScpiEmulator(tmp_path / "ttyPSU", output_words=words)
    psu = make_psu(emulator)
    try:
        assert psu.switch(True) is True
        assert emulator.output is True
        assert psu.read()["psu.output"] == 1.0
        assert psu.switch(False) is False
        assert emulator.sent("OUTP") == ["OUTP ON", "OUTP OFF"]
    finally:
        psu.close()
        emulator.close()


@pytest.mark.parametrize(
    ("setpoints", "named"),
    [({"voltage": 12.01}, "max_voltage"), ({"voltage": 5, "current": 2.5}, "max_current")],
)
def test_a_setpoint_above_the_agents_max_is_refused_with_nothing_sent(
    emulator, psu, setpoints, named
):
    with pytest.raises(PsuLimitError, match=named):
        psu.set(**setpoints)

    assert emulator.received == []
    assert (emulator.voltage, emulator.current) == (0.0, 1.0)


def test_an_instrument_that_stops_answering_is_down_then_back(emulator, psu, caplog):
    source = collector(psu)
    assert source.collect()["psu.up"] == 1.0

    emulator.silent = True
    with caplog.at_level(logging.WARNING, logger="homepot_agent.lab"):
        first, second = source.collect(), source.collect()
    assert first == second == {"psu.up": 0.0}
    assert (
        len([r for r in caplog.records if "psu: not available" in r.message]) == 1
    )  # once per change

    emulator.silent = False
    emulator.output, emulator.voltage = True, 2.0
    recovered = source.collect()
    assert recovered["psu.up"] == 1.0
    assert recovered["psu.voltage"] == 2.0


def test_garbage_answers_are_an_error_and_do_not_shift_later_answers(emulator, psu):
    emulator.voltage = 7.0
    emulator.garbage = 1

    with pytest.raises(PsuError, match="not a number"):
        psu.read()
    assert collector(psu).collect()["psu.voltage_set"] == 7.0


def test_a_garbled_output_state_is_an_error(emulator, psu):
    emulator.garbage = 1
    with pytest.raises(PsuError):
        psu.switch(True)


def test_the_port_is_reopened_after_the_instrument_is_unplugged(emulator, psu):
    source = collector(psu)
    emulator.voltage, emulator.output = 4.0, True
    assert source.collect()["psu.up"] == 1.0

    emulator.unplug()
    assert source.collect() == {"psu.up": 0.0}
    assert source.collect() == {"psu.up": 0.0}  # the device path is gone: cannot open

    emulator.plug()  # a new pty under the same name
    back = source.collect()
    assert back["psu.up"] == 1.0
    assert back["psu.voltage_set"] == 4.0


def test_a_missing_port_is_down_not_a_crash(tmp_path):
    source = collector(Psu(PsuSettings(port=str(tmp_path / "nothing"), timeout=0.1)))

    assert source.collect() == {"psu.up": 0.0}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"timeout": 0}, "timeout"),
        ({"max_voltage": -1}, "max_voltage"),
        ({"interval": "fast"}, "interval"),
        ({"baud": 9600}, "baud"),
        ({"port": ""}, "port"),
    ],
)
def test_bad_settings_name_the_key(values, named):
    with pytest.raises(ValueError, match=f"^{named}: "):
        parse(values)


def test_the_collector_and_the_commands_share_one_driver_per_port(tmp_path):
    settings = parse({"port": str(tmp_path / "tty"), "max_voltage": 5})

    assert build(settings, LabContext()).psu is build(settings, LabContext()).psu


@pytest.mark.django_db(transaction=True)
def test_the_agent_pushes_psu_metrics_and_psu_up_0_while_unplugged(registered, emulator):
    config = load_config(registered, environ={})
    table = {"port": str(emulator.link), "timeout": 0.3, "interval": 5}
    save_config(replace(config, enabled_collectors=["psu"], tables={"psu": table}), registered)
    emulator.voltage, emulator.current, emulator.output = 5.0, 0.2, True
    clock = Clock()
    agent = start_agent(registered, clock)

    def pushed() -> dict[str, float]:
        agent.collect_lab(clock.now)
        assert agent.push_once()
        latest = LatestValue.objects.filter(
            device__public_id="pi-e2e", metric__name__startswith="psu."
        )
        return dict(latest.values_list("metric__name", "value"))

    assert pushed() == {
        "psu.voltage": 2.0,
        "psu.current": 0.2,
        "psu.power": pytest.approx(0.4),
        "psu.output": 1.0,
        "psu.voltage_set": 5.0,
        "psu.current_limit": 0.2,
        "psu.up": 1.0,
    }
    emulator.unplug()
    clock.now += 5
    assert pushed()["psu.up"] == 0.0
    emulator.plug()
    clock.now += 5
    assert pushed()["psu.up"] == 1.0
