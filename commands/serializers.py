import json

from django.conf import settings
from rest_framework import serializers

from commands.models import Command, CommandGroup
from commands.registry import COMMAND_TYPES
from commands.services import REPORTED_STATUS_NAMES
from homepot.validators import BoundedDateTimeField


class CommandSerializer(serializers.ModelSerializer):
    device_id = serializers.CharField(source="device.public_id", read_only=True)
    group_id = serializers.UUIDField(source="group.public_id", read_only=True, allow_null=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = Command
        fields = [
            "command_id",
            "device_id",
            "group_id",
            "command_type",
            "payload",
            "status",
            "created_by",
            "created_at",
            "delivered_at",
            "started_at",
            "finished_at",
            "executed_at",
            "expires_at",
            "ack_deadline",
            "deadline",
            "timeout_seconds",
            "attempts",
            "max_attempts",
            "result",
            "exit_code",
            "output",
            "error",
        ]
        read_only_fields = fields
        extra_kwargs = {"command_id": {"source": "public_id"}}  # the API's name of public_id


class PendingCommandSerializer(serializers.ModelSerializer):
    """What an agent reads from /devices/pending: HOMEPOT's existing agents use
    the first five fields."""

    class Meta:
        model = Command
        fields = [
            "command_id",
            "command_type",
            "payload",
            "status",
            "created_at",
            "attempts",
            "timeout_seconds",
            "expires_at",
        ]
        read_only_fields = fields
        extra_kwargs = {"command_id": {"source": "public_id"}}


class PendingQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=1000,
        help_text="Deliver at most this many commands (never more than the server's batch). "
        "HOMEPOT's agent asks for 1: it runs one command at a time.",
    )
    wait = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=999_999,
        help_text="Long poll: with nothing queued, answer as soon as a command is queued, "
        "or with the empty list after this many seconds. Capped at the server's maximum, "
        "which it advertises in the X-Long-Poll-Max header of polls and heartbeats; a "
        "server that does not advertise it answers at once.",
    )


class CommandOptionsSerializer(serializers.Serializer):
    command_type = serializers.CharField(
        max_length=64, help_text=f"One of: {', '.join(COMMAND_TYPES)}."
    )
    payload = serializers.DictField(required=False, default=dict)
    expires_in = serializers.IntegerField(
        min_value=1, max_value=30 * 86400, required=False, help_text="Seconds to wait for delivery."
    )
    timeout = serializers.IntegerField(
        min_value=1,
        max_value=86400,
        required=False,
        help_text="Seconds the agent may run it after acknowledging.",
    )
    max_attempts = serializers.IntegerField(min_value=1, max_value=10, required=False)


class BulkCommandSerializer(CommandOptionsSerializer):
    device_ids = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, min_length=1
    )
    site = serializers.SlugField(required=False)
    device_type = serializers.SlugField(required=False)

    def validate(self, attrs: dict) -> dict:
        if ("device_ids" in attrs) == ("site" in attrs):
            raise serializers.ValidationError("Name either device_ids or a site.")
        if "device_type" in attrs and "site" not in attrs:
            raise serializers.ValidationError({"device_type": "Only with a site."})
        return attrs


class CommandGroupSerializer(serializers.ModelSerializer):
    counts = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = CommandGroup
        fields = [
            "group_id",
            "command_type",
            "payload",
            "target",
            "created_by",
            "created_at",
            "counts",
        ]
        read_only_fields = fields
        extra_kwargs = {"group_id": {"source": "public_id"}}  # the API's name of public_id

    def get_counts(self, group: CommandGroup) -> dict[str, int]:
        return self.context["counts"]


class CommandReportSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=REPORTED_STATUS_NAMES)
    result = serializers.DictField(required=False, allow_null=True)
    executed_at = BoundedDateTimeField(required=False, allow_null=True)
    # A process exit status (or a Windows code) fits signed 32 bits, as does the column.
    exit_code = serializers.IntegerField(
        required=False, allow_null=True, min_value=-(2**31), max_value=2**31 - 1
    )
    output = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    error = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)

    def to_internal_value(self, data: object) -> dict:
        if isinstance(data, dict) and isinstance(data.get("status"), str):
            data = {**data, "status": data["status"].lower()}
        return super().to_internal_value(data)

    def validate_result(self, value: dict | None) -> dict | None:
        if value is not None and len(json.dumps(value)) > settings.COMMAND_RESULT_MAX_BYTES:
            raise serializers.ValidationError(
                f"At most {settings.COMMAND_RESULT_MAX_BYTES} bytes of JSON."
            )
        return value
