"""psu_set, psu_output and arp_update on the agent: against the SCPI emulator
on a real pty, a fake `ip` first on PATH (the host's neighbour table is never
touched), and end to end from a live server's queue."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from homepot_agent.config import config_from_mapping, load_config, save_config
from homepot_agent.executor import FAILED, REJECTED, SUCCEEDED, Executor

from tests.agent.helpers import Clock, calls, poll_until_idle, queue, start_agent
from tests.agent.scpi_emulator import ScpiEmulator

# Remembers what `neigh replace` set, and `neigh show` prints it back, as the
# kernel would; an interface named "down0" fails like a missing device.
FAKE_IP = """#!/bin/sh
echo "$@" >> "{log}"
case "$*" in *"dev down0"*) echo 'Cannot find device "down0"' >&2; exit 1 ;; esac
case "$1 $2" in
  "neigh replace") echo "$3 dev $7 lladdr $5 PERMANENT" > "{log}.entry" ;;
  "neigh show") [ -f "{log}.entry" ] && cat "{log}.entry" ;;
esac
exit 0
"""
ARP = {"ip": "192.0.2.10", "mac": "02:00:5e:10:00:01", "interface": "eth0"}


@pytest.fixture
def emulator(tmp_path):
    instrument = ScpiEmulator(tmp_path / "ttyPSU")
    yield instrument
    instrument.close()


@pytest.fixture
def ip_log(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "ipbin"
    bin_dir.mkdir()
    log = tmp_path / "ip.log"
    script = bin_dir / "ip"
    script.write_text(FAKE_IP.format(log=log))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def psu_table(emulator: ScpiEmulator) -> dict:
    return {"port": str(emulator.link), "timeout": 0.3, "max_voltage": 12, "max_current": 2}


def make_executor(emulator: ScpiEmulator | None = None, **settings) -> Executor:
    values = {"psu": psu_table(emulator)} if emulator else {}
    return Executor(config_from_mapping({**values, **settings}))


def run(executor: Executor, command_type: str, payload: dict):
    return executor.execute({"command_type": command_type, "payload": payload})


# --- psu_set / psu_output -----------------------------------------------------------


def test_psu_set_sets_and_reports_the_read_back(emulator):
    outcome = run(make_executor(emulator), "psu_set", {"voltage": 5.0, "current": 0.5})

    assert outcome.status == SUCCEEDED, outcome
    assert outcome.result == {
        "requested": {"voltage": 5.0, "current": 0.5},
        "voltage_set": 5.0,
        "current_limit": 0.5,
    }
    assert emulator.sent() == ["VOLT 5.0000", "CURR 0.5000"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"voltage": 12.5}, "max_voltage"),
        ({"current": 3}, "max_current"),
        ({"voltage": -1}, ">= 0"),
        ({"voltage": True}, "not a number"),
        ({"voltage": float("nan")}, "finite"),
        ({}, "name voltage, current or both"),
    ],
)
def test_psu_set_refuses_bad_or_excessive_setpoints_with_nothing_sent(emulator, payload, reason):
    outcome = run(make_executor(emulator), "psu_set", payload)

    assert outcome.status == REJECTED
    assert reason in outcome.error
    assert emulator.received == []


def test_psu_commands_are_rejected_without_a_psu_table():
    outcome = run(make_executor(), "psu_output", {"enabled": True})

    assert outcome.status == REJECTED
    assert "[psu]" in outcome.error


@pytest.mark.parametrize("enabled", [True, False])
def test_psu_output_is_confirmed_by_reading_it_back(emulator, enabled):
    emulator.output = not enabled

    outcome = run(make_executor(emulator), "psu_output", {"enabled": enabled})

    assert outcome.status == SUCCEEDED, outcome
    assert outcome.result == {"output": enabled}
    assert emulator.received[-1] == "OUTP?"


def test_psu_output_needs_a_boolean(emulator):
    outcome = run(make_executor(emulator), "psu_output", {"enabled": "yes"})

    assert outcome.status == REJECTED
    assert emulator.received == []


def test_a_silent_instrument_fails_the_command_with_a_reason(emulator):
    emulator.silent = True

    outcome = run(make_executor(emulator), "psu_set", {"voltage": 3})

    assert outcome.status == FAILED
    assert "no answer to VOLT?" in outcome.error


# --- arp_update ---------------------------------------------------------------------


def test_arp_update_is_off_unless_the_config_allows_it(ip_log):
    outcome = run(make_executor(), "arp_update", ARP)

    assert outcome.status == REJECTED
    assert "not allowed" in outcome.error
    assert calls(ip_log) == []


def allowing_arp() -> Executor:
    return make_executor(allowed_commands=["ping", "arp_update"])


def test_arp_update_replaces_the_entry_and_reports_it(ip_log):
    outcome = run(allowing_arp(), "arp_update", ARP)

    assert outcome.status == SUCCEEDED, outcome
    assert calls(ip_log) == [
        "neigh replace 192.0.2.10 lladdr 02:00:5e:10:00:01 dev eth0 nud permanent",
        "neigh show 192.0.2.10 dev eth0",
    ]
    assert outcome.result == {
        **ARP,
        "entry": "192.0.2.10 dev eth0 lladdr 02:00:5e:10:00:01 PERMANENT",
    }


def test_arp_update_takes_ipv6(ip_log):
    outcome = run(allowing_arp(), "arp_update", {**ARP, "ip": "2001:db8::10"})

    assert outcome.status == SUCCEEDED, outcome
    assert calls(ip_log)[0].startswith("neigh replace 2001:db8::10 lladdr")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ip": "192.0.2.300"}, "ip"),
        ({"ip": "192.0.2.10; reboot"}, "ip"),
        ({"mac": "02:00:5e:10:00"}, "mac"),
        ({"mac": "02:00:5e:10:00:01\n"}, "mac"),
        ({"interface": "-f"}, "interface"),
        ({"interface": "eth0 dev lo"}, "interface"),
        ({"interface": "a" * 16}, "interface"),
    ],
)
def test_arp_update_refuses_bad_arguments_and_runs_nothing(ip_log, change, field):
    outcome = run(allowing_arp(), "arp_update", {**ARP, **change})

    assert outcome.status == REJECTED
    assert outcome.error.startswith(f"{field}:")
    assert calls(ip_log) == []


def test_a_failing_ip_command_fails_the_update_with_its_message(ip_log):
    outcome = run(allowing_arp(), "arp_update", {**ARP, "interface": "down0"})

    assert outcome.status == FAILED
    assert "Cannot find device" in outcome.error
    assert len(calls(ip_log)) == 1  # nothing shown after a failed replace


# --- end to end: queued on a live server, run by the real agent ----------------------


@pytest.mark.django_db(transaction=True)
def test_lab_commands_queued_on_the_server_succeed_with_the_read_back(
    registered, operator, emulator, ip_log
):
    config = load_config(registered, environ={})
    allowed = [*config.allowed_commands, "arp_update"]
    save_config(
        replace(config, tables={"psu": psu_table(emulator)}, allowed_commands=allowed),
        registered,
    )
    commands = [
        queue(operator, "psu_set", {"voltage": 5, "current": 0.4}),
        queue(operator, "psu_output", {"enabled": True}),
        queue(operator, "psu_set", {"voltage": 30}),  # above this device's max_voltage
        queue(operator, "arp_update", ARP),
    ]

    poll_until_idle(start_agent(registered, Clock()))

    for command in commands:
        command.refresh_from_db()
    set_, output, too_high, arp = commands
    assert (set_.status, set_.result["voltage_set"], set_.result["current_limit"]) == (
        "succeeded",
        5.0,
        0.4,
    )
    assert (output.status, output.result) == ("succeeded", {"output": True})
    assert too_high.status == "rejected"
    assert "max_voltage" in too_high.error
    assert arp.status == "succeeded"
    assert arp.result["entry"] == "192.0.2.10 dev eth0 lladdr 02:00:5e:10:00:01 PERMANENT"
    assert emulator.sent() == ["VOLT 5.0000", "CURR 0.4000", "OUTP ON"]
    assert (emulator.voltage, emulator.output) == (5.0, True)


def test_the_arp_drop_in_grants_exactly_what_ip_neigh_needs():
    systemd = Path(__file__).parents[2] / "agent_client" / "systemd"
    options = {}
    for line in (systemd / "homepot-agent.service.d" / "arp-update.conf").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            options[key] = value.split()

    assert options["AmbientCapabilities"] == options["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]
    unit_families = [
        line.split("=", 1)[1].split()
        for line in (systemd / "homepot-agent.service").read_text().splitlines()
        if line.startswith("RestrictAddressFamilies=")
    ][0]
    # the drop-in replaces the unit's list: it must keep every family the unit allows
    assert options["RestrictAddressFamilies"] == [*unit_families, "AF_NETLINK"]
