"""The API's shapes of SSH targets, their checks and a round's outcome."""

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from devices.models import (
    Device,
    Site,
    SshCheck,
    SshTarget,
    SshTargetCheck,
    device_id_validator,
    ssh_username_validator,
)
from devices.serializers import device_id_not_reserved
from devices.ssh.breaker import Circuit, circuit_state
from devices.ssh.services import (
    CHECK_TIMEOUT_MAX_SECONDS,
    INTERVAL_MAX_SECONDS,
    INTERVAL_MIN_SECONDS,
    OPERATOR_PARSERS,
    WET_BOARD,
    CheckChoice,
    check_command_validator,
    fingerprint_of,
    host_key_normalise,
    metric_prefix_validator,
    ssh_host_validate,
)
from homepot.api import StrictSerializer

MAX_CHECKS_PER_TARGET = 50


def _interval_field(**kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=INTERVAL_MIN_SECONDS, max_value=INTERVAL_MAX_SECONDS, **kwargs
    )


# --- Input ------------------------------------------------------------------------------


class CheckChoiceObjectSerializer(StrictSerializer):
    name = serializers.CharField(max_length=64)
    interval_seconds = _interval_field(required=False, allow_null=True)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "maxLength": 64, "description": "a check's name"},
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 64},
                    "interval_seconds": {
                        "type": "integer",
                        "minimum": INTERVAL_MIN_SECONDS,
                        "maximum": INTERVAL_MAX_SECONDS,
                        "nullable": True,
                        "description": "this check's own interval (default: the target's)",
                    },
                },
                "required": ["name"],
                "additionalProperties": False,
            },
        ]
    }
)
class CheckChoiceField(serializers.Field):
    """A check a target runs: its name, or {name, interval_seconds}."""

    # (Braces doubled: DRF formats its messages.)
    default_error_messages = {"invalid": "A check's name, or {{name, interval_seconds}}."}

    def to_internal_value(self, data: Any) -> dict:
        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, dict):
            self.fail("invalid")
        serializer = CheckChoiceObjectSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def to_representation(self, value: Any) -> Any:
        return value


def check_choices_resolve(entries: list[dict]) -> list[CheckChoice]:
    """The named checks, or a ValidationError naming the unknown and repeated ones."""
    names = [entry["name"] for entry in entries]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise serializers.ValidationError(f"Listed more than once: {', '.join(repeated)}.")
    known = {check.name: check for check in SshCheck.objects.filter(name__in=names)}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise serializers.ValidationError(f"Unknown SSH check: {', '.join(unknown)}.")
    return [CheckChoice(known[e["name"]], e.get("interval_seconds")) for e in entries]


class SshTargetChangeSerializer(StrictSerializer):
    """What a PATCH may change (all optional there)."""

    name = serializers.CharField(max_length=200)
    host = serializers.CharField(
        max_length=255, validators=[ssh_host_validate], help_text="A host name or an IP address."
    )
    port = serializers.IntegerField(min_value=1, max_value=65535, default=22)
    username = serializers.CharField(
        max_length=32, validators=[ssh_username_validator], help_text="A POSIX user name."
    )
    host_key = serializers.CharField(
        max_length=8192,
        allow_blank=True,
        default="",
        trim_whitespace=False,
        help_text="The pinned host key, OpenSSH format (`ssh-ed25519 AAAA...`, as in "
        "`ssh-keyscan` output). Empty: every check fails and reports the key the host "
        "offers, for an operator to accept.",
    )
    via = serializers.CharField(
        max_length=200,
        allow_blank=True,
        default="",
        help_text="A note for people (a jump host); not used to connect.",
    )
    powered_by = serializers.SlugRelatedField(
        slug_field="public_id",
        queryset=Device.objects.all(),
        allow_null=True,
        default=None,
        help_text="The device id of the lab monitor that powers the board: an active "
        "device of the same site.",
    )
    checks = serializers.ListField(
        child=CheckChoiceField(),
        max_length=MAX_CHECKS_PER_TARGET,
        required=False,
        help_text="Default (on create): every built-in check.",
    )
    interval_seconds = _interval_field(default=60)
    enabled = serializers.BooleanField(default=True)

    def validate_host_key(self, value: str) -> str:
        return host_key_normalise(value)

    def validate_checks(self, value: list[dict]) -> list[CheckChoice]:
        return check_choices_resolve(value)


class SshTargetCreateSerializer(SshTargetChangeSerializer):
    device_id = serializers.CharField(
        source="public_id", max_length=64, validators=[device_id_validator, device_id_not_reserved]
    )
    site = serializers.SlugRelatedField(
        slug_field="public_id", queryset=Site.objects.all(), help_text="The site's id."
    )
    device_type = serializers.SlugField(max_length=32, default=WET_BOARD)


class HostKeyAcceptSerializer(StrictSerializer):
    fingerprint = serializers.CharField(
        max_length=100,
        help_text="The fingerprint of the key the host offered, as the detail shows it "
        "(`SHA256:...`): the operator confirms the key they saw.",
    )


class SshCheckCreateSerializer(StrictSerializer):
    name = serializers.SlugField(max_length=64)
    description = serializers.CharField(max_length=200, allow_blank=True, default="")
    command = serializers.CharField(
        max_length=1000,
        validators=[check_command_validator],
        help_text="Run as given by the login shell of the target's user; one line.",
    )
    parser = serializers.ChoiceField(choices=[(p.value, p.label) for p in OPERATOR_PARSERS])
    metric_prefix = serializers.CharField(
        max_length=64,
        validators=[metric_prefix_validator],
        help_text="Metric names start with it: `wet.ptp` gives `wet.ptp.<key>`.",
    )
    timeout_seconds = serializers.IntegerField(
        min_value=1, max_value=CHECK_TIMEOUT_MAX_SECONDS, default=10
    )


# --- Output -----------------------------------------------------------------------------


def _circuit_field() -> serializers.ChoiceField:
    return serializers.ChoiceField(choices=[c.value for c in Circuit])


class SshCheckSerializer(serializers.ModelSerializer):
    class Meta:
        model = SshCheck
        fields = [
            "name",
            "description",
            "command",
            "parser",
            "metric_prefix",
            "timeout_seconds",
            "builtin",
        ]
        read_only_fields = fields


class SshTargetCheckSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="ssh_check.name")
    effective_interval_seconds = serializers.IntegerField()

    class Meta:
        model = SshTargetCheck
        fields = [
            "name",
            "interval_seconds",
            "effective_interval_seconds",
            "next_run_at",
            "last_run_at",
            "last_status",
            "last_error",
        ]
        read_only_fields = fields


class TargetDeviceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["status", "last_seen", "decommissioned_at"]
        read_only_fields = fields


class SshTargetSerializer(serializers.ModelSerializer):
    device_id = serializers.CharField(source="device.public_id")
    name = serializers.CharField(source="device.name")
    site = serializers.CharField(source="device.site.public_id")
    device_type = serializers.CharField(source="device.device_type")
    device = TargetDeviceSerializer()
    powered_by = serializers.CharField(source="powered_by.public_id", allow_null=True)
    host_key_fingerprint = serializers.SerializerMethodField()
    offered_host_key_fingerprint = serializers.SerializerMethodField()
    circuit = serializers.SerializerMethodField()
    checks = SshTargetCheckSerializer(source="target_checks", many=True)

    class Meta:
        model = SshTarget
        fields = [
            "device_id",
            "name",
            "site",
            "device_type",
            "host",
            "port",
            "username",
            "host_key",
            "host_key_fingerprint",
            "via",
            "powered_by",
            "interval_seconds",
            "enabled",
            "device",
            "last_check_at",
            "last_status",
            "last_error",
            "consecutive_failures",
            "circuit",
            "circuit_opened_at",
            "offered_host_key",
            "offered_host_key_fingerprint",
            "offered_host_key_at",
            "checks",
        ]
        read_only_fields = fields

    def get_host_key_fingerprint(self, target: SshTarget) -> str:
        return fingerprint_of(target.host_key)

    def get_offered_host_key_fingerprint(self, target: SshTarget) -> str:
        return fingerprint_of(target.offered_host_key)

    @extend_schema_field(_circuit_field())
    def get_circuit(self, target: SshTarget) -> str:
        return circuit_state(target, timezone.now()).value


class CheckOutcomeSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["ok", "failed"])
    metrics = serializers.DictField(child=serializers.FloatField())
    note = serializers.CharField(help_text="Why an `ok` check has no metrics, if it has none.")
    error = serializers.CharField()
    duration_ms = serializers.IntegerField()


class RoundOutcomeSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=[s.value for s in SshTarget.LastStatus if s.value],
        help_text="The target's status after the round.",
    )
    error = serializers.CharField(help_text="What failed the whole round (connection, host key).")
    circuit = _circuit_field()
    offered_host_key_fingerprint = serializers.CharField(
        help_text="Set on host_key_mismatch: accept it if it is the board's."
    )
    checks = CheckOutcomeSerializer(many=True)
