"""The command types the server accepts, in one place.

Each entry names the type and the serializer its payload must pass at queue
time. A later command (power supply, ARP scan) is one more entry here.
"""

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from rest_framework import serializers

from homepot.api import StrictSerializer

# A systemd unit name, matched against the whole string. The agent checks the
# same pattern (exported with the contract, see commands/contract.py).
SERVICE_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9@._:-]{0,127}"
# A MAC address as `ip neigh` takes it (six colon-separated hex pairs), and a
# Linux interface name (at most 15 characters; never starting with "-", so it
# cannot be read as an option). Exported with the contract like the above.
MAC_ADDRESS_PATTERN = r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}"
INTERFACE_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}"


class FullMatchField(serializers.RegexField):
    """A string matching `pattern` as a whole, as sent: not trimmed first, since
    the agent checks the very string it receives ("nginx\\n" is no unit name)."""

    def __init__(self, pattern: str, **kwargs: Any) -> None:
        self.pattern = pattern
        super().__init__(rf"\A(?:{pattern})\Z", trim_whitespace=False, **kwargs)


class Payload(StrictSerializer):
    # The fewest fields a payload must name (exported with the contract).
    MIN_FIELDS: ClassVar[int] = 0

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if len(attrs) < self.MIN_FIELDS:
            raise serializers.ValidationError("Name at least one setting to change.")
        return attrs


class NoPayload(Payload):
    pass


class ServicePayload(Payload):
    service = FullMatchField(
        SERVICE_NAME_PATTERN, error_messages={"invalid": "Not a systemd unit name."}
    )


class UpdateConfigPayload(Payload):
    MIN_FIELDS = 1
    collect_interval = serializers.IntegerField(min_value=1, max_value=86400, required=False)
    push_interval = serializers.IntegerField(min_value=1, max_value=86400, required=False)
    poll_interval = serializers.IntegerField(min_value=1, max_value=86400, required=False)
    enabled_collectors = serializers.ListField(
        child=serializers.SlugField(max_length=64), max_length=64, required=False
    )


class FiniteFloatField(serializers.FloatField):
    """A float that is a real number: NaN and infinities are no setpoints."""

    def to_internal_value(self, data: Any) -> float:
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("invalid")
        return value


class PsuSetPayload(Payload):
    # The agent enforces its own max_voltage / max_current on top of these.
    MIN_FIELDS = 1
    voltage = FiniteFloatField(min_value=0, required=False)
    current = FiniteFloatField(min_value=0, required=False)


class PsuOutputPayload(Payload):
    enabled = serializers.BooleanField()


class ArpUpdatePayload(Payload):
    ip = serializers.IPAddressField(protocol="both")
    mac = FullMatchField(MAC_ADDRESS_PATTERN, error_messages={"invalid": "Not a MAC address."})
    interface = FullMatchField(
        INTERFACE_NAME_PATTERN, error_messages={"invalid": "Not a network interface name."}
    )


@dataclass(frozen=True)
class CommandType:
    name: str
    payload: type[Payload]
    description: str
    # Seconds the agent may take after acknowledging before the command times out.
    default_timeout: int = 300


COMMAND_TYPES: dict[str, CommandType] = {
    t.name: t
    for t in [
        CommandType("ping", NoPayload, "Answer with the agent's time and version.", 60),
        CommandType("reboot", NoPayload, "Reboot the machine; confirmed by a new boot id.", 900),
        CommandType("restart_service", ServicePayload, "systemctl restart SERVICE."),
        CommandType("stop_service", ServicePayload, "systemctl stop SERVICE."),
        CommandType("start_service", ServicePayload, "systemctl start SERVICE."),
        CommandType("service_status", ServicePayload, "systemctl status of SERVICE.", 60),
        CommandType("list_services", NoPayload, "The state of the configured services.", 60),
        CommandType("update_config", UpdateConfigPayload, "Change agent settings live.", 60),
        CommandType("psu_set", PsuSetPayload, "Set the PSU's voltage and/or current limit.", 60),
        CommandType("psu_output", PsuOutputPayload, "Switch the PSU's output on or off.", 60),
        CommandType("arp_update", ArpUpdatePayload, "ip neigh replace IP lladdr MAC.", 60),
    ]
}


def command_type_get(name: str) -> CommandType | None:
    # HOMEPOT's earlier agents used upper-case names (REBOOT, UPDATE_CONFIG).
    return COMMAND_TYPES.get(name.lower())


def payload_validate(command_type: CommandType, payload: dict) -> dict:
    """The cleaned payload, or serializers.ValidationError naming the bad fields."""
    serializer = command_type.payload(data=payload)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
