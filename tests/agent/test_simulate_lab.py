"""`homepot-agent simulate`: some devices are lab monitors (a quarter by default,
at least one) that report a plausible bench, send thermal frames (faster while
an operator watches), and answer psu_set / psu_output; against a live server."""

import argparse

import pytest
from django.test import Client
from homepot_agent.simulate import SimulatedBench, build_fleet, lab_monitor_count

from analytics.models import LatestValue, ThermalFrame
from commands.models import Command
from commands.services import CommandSpec, command_enqueue
from devices import services
from devices.models import Device

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fleet_args(tmp_path, live_server, site, operator):
    def make(count: int, **extra) -> argparse.Namespace:
        token = services.enrollment_token_create(actor=operator, site=site, max_uses=20).token
        return argparse.Namespace(
            server=live_server.url,
            site=site.public_id,
            token=token,
            count=count,
            state_dir=tmp_path,
            interval=10.0,
            wait=5,
            **extra,
        )

    return make


def latest(device: Device) -> dict[str, float]:
    return dict(LatestValue.objects.filter(device=device).values_list("metric__name", "value"))


def lab_agent(fleet):
    return next(agent for agent in fleet if agent.lab is not None)


def test_a_quarter_of_the_fleet_and_at_least_one_are_lab_monitors():
    assert [lab_monitor_count(n, 0.25) for n in (1, 3, 4, 8, 24)] == [1, 1, 1, 2, 6]
    assert lab_monitor_count(8, 0) == 0


def test_lab_monitors_enroll_as_such(fleet_args):
    fleet = build_fleet(fleet_args(8))

    types = sorted(Device.objects.values_list("device_type", flat=True))
    assert types == ["lab_monitor"] * 2 + ["simulated"] * 6
    assert sum(agent.lab is not None for agent in fleet) == 2


def test_a_lab_monitor_reports_a_plausible_bench_and_a_drifting_warm_spot(fleet_args):
    agent = lab_agent(build_fleet(fleet_args(1)))
    bench = agent.executor.bench
    spots = []
    for _ in range(3):
        agent.collect_lab(agent.lab.next_due())
        frame = ThermalFrame.objects.first()
        hottest = frame.values.index(frame.max)
        # the hottest pixel is where the bench's warm spot is
        assert abs(hottest % 32 - bench.spot_x) <= 2 and abs(hottest // 32 - bench.spot_y) <= 2
        spots.append((bench.spot_x, bench.spot_y))
    assert len(set(spots)) == 3  # it drifts
    assert agent.push_once()

    values = latest(Device.objects.get())
    assert 15 < values["bme680.temperature"] < 35
    assert 20 < values["bme680.humidity"] < 75
    assert 0 <= values["bme680.iaq"] <= 500
    assert values["psu.voltage"] == pytest.approx(12.0, abs=0.05) and values["psu.output"] == 1
    assert values["adc.supply_voltage"] < values["psu.voltage"]  # the cable drops a little
    assert values["adc.board_current"] == pytest.approx(values["psu.current"], abs=0.02)
    assert values["thermal.max"] > values["thermal.mean"] + 3  # a warm spot
    for name in ("bme680", "mlx90640", "mcp3424", "psu"):
        assert values[f"{name}.up"] == 1
    frame = ThermalFrame.objects.first()
    assert (frame.width, frame.height, len(frame.values)) == (32, 24, 768)
    assert ThermalFrame.objects.count() == 3


def queue(operator, device, command_type, payload) -> Command:
    spec = CommandSpec.validated(command_type=command_type, payload=payload)
    return command_enqueue(actor=operator, device=device, spec=spec)[0]


def test_a_lab_monitor_answers_psu_commands_and_its_readings_follow(fleet_args, operator):
    agent = lab_agent(build_fleet(fleet_args(1)))
    device = Device.objects.get()
    setting = queue(operator, device, "psu_set", {"voltage": 5.0, "current": 0.1})
    too_high = queue(operator, device, "psu_set", {"voltage": 80.0})
    switch = queue(operator, device, "psu_output", {"enabled": False})

    for _ in range(3):
        assert agent.poll_once()

    for command in (setting, too_high, switch):
        command.refresh_from_db()
    assert setting.status == "succeeded"
    assert setting.result["voltage_set"] == 5.0 and setting.result["current_limit"] == 0.1
    assert too_high.status == "rejected" and "maximum" in too_high.error
    assert switch.status == "succeeded" and switch.result["output"] is False
    agent.collect_lab(agent.lab.next_due())
    assert agent.push_once()
    values = latest(device)
    assert values["psu.voltage_set"] == 5.0 and values["psu.output"] == 0
    assert values["psu.voltage"] == 0 and values["adc.board_current"] < 0.01


def test_the_camera_speeds_up_while_the_view_is_open_and_slows_after(fleet_args, viewer, settings):
    settings.THERMAL_LIVE_LEASE_SECONDS = 2
    agent = lab_agent(build_fleet(fleet_args(1)))
    camera = agent.lab.slots[1]
    now = agent.clock()
    assert camera.interval_at(now) == 10.0
    browser = Client()
    browser.force_login(viewer)

    browser.get(f"/api/v1/devices/{agent.config.device_id}/thermal/latest?live=true")
    assert agent.poll_once()  # the answer carries the lease

    assert camera.interval_at(agent.clock()) == 0.25
    assert camera.interval_at(agent.clock() + 2.5) == 10.0  # nobody renewed it


def test_the_bench_refuses_setpoints_above_its_limits():
    bench = SimulatedBench(seed=1)

    assert "maximum" in bench.refusal("psu_set", {"current": 6.0})
    assert bench.refusal("psu_set", {"voltage": 3.3}) == ""
    assert bench.refusal("psu_output", {"enabled": "yes"})
