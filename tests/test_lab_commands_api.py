"""POST /api/v1/devices/{device_id}/commands for the lab commands: psu_set,
psu_output and arp_update are validated at queue time (the agent checks again,
with its own limits)."""

import pytest

from commands.models import Command


def queue(client, command_type, payload):
    body = {"command_type": command_type, "payload": payload}
    return client.post("/api/v1/devices/pi-1/commands", body, format="json")


ARP = {"ip": "192.0.2.10", "mac": "02:00:5E:10:00:01", "interface": "eth0"}


@pytest.mark.parametrize(
    ("command_type", "payload"),
    [
        ("psu_set", {"voltage": 5}),
        ("psu_set", {"current": 0.25}),
        ("psu_set", {"voltage": 0, "current": 0}),
        ("psu_output", {"enabled": True}),
        ("psu_output", {"enabled": False}),
        ("arp_update", ARP),
        ("arp_update", {**ARP, "ip": "2001:db8::10"}),
        ("arp_update", {**ARP, "interface": "br-lab.20"}),
    ],
)
def test_valid_lab_commands_are_queued(client, operator, agent, command_type, payload):
    client.force_authenticate(operator)

    response = queue(client, command_type, payload)

    assert response.status_code == 201, response.json()
    assert Command.objects.get().payload == response.json()["payload"]


@pytest.mark.parametrize(
    ("command_type", "payload", "field"),
    [
        ("arp_update", {**ARP, "mac": "02:00:5e:10:00"}, "mac"),
        ("arp_update", {**ARP, "mac": "02-00-5e-10-00-01"}, "mac"),
        ("arp_update", {**ARP, "mac": "02:00:5e:10:00:0g"}, "mac"),
        ("arp_update", {**ARP, "mac": "02:00:5e:10:00:01\n"}, "mac"),
        ("arp_update", {**ARP, "ip": "192.0.2.300"}, "ip"),
        ("arp_update", {**ARP, "ip": "board.lab"}, "ip"),
        ("arp_update", {**ARP, "interface": "-f"}, "interface"),
        ("arp_update", {**ARP, "interface": "eth0 dev lo"}, "interface"),
        ("arp_update", {**ARP, "interface": "x" * 16}, "interface"),
        ("arp_update", {"ip": ARP["ip"], "mac": ARP["mac"]}, "interface"),
        ("psu_set", {"voltage": -0.1}, "voltage"),
        ("psu_set", {"current": "NaN"}, "current"),
        ("psu_set", {"voltage": "Infinity"}, "voltage"),
        ("psu_set", {"voltage": "five"}, "voltage"),
        ("psu_set", {}, "non_field_errors"),
        ("psu_set", {"voltage": 5, "power": 10}, "power"),
        ("psu_output", {}, "enabled"),
        ("psu_output", {"enabled": "maybe"}, "enabled"),
    ],
)
def test_bad_lab_commands_are_400_and_queue_nothing(
    client, operator, agent, command_type, payload, field
):
    client.force_authenticate(operator)

    response = queue(client, command_type, payload)

    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not Command.objects.exists()
