import json

from django.conf import settings
from rest_framework import serializers

from devices.models import RESERVED_DEVICE_IDS, Device, Site, device_id_validator


class SiteSerializer(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = ["site_id", "name", "location", "description", "created_at"]
        read_only_fields = ["created_at"]
        extra_kwargs = {
            # The API's name of Site.public_id.
            # Uniqueness is the service's job (409), not a 400 from the validator.
            "site_id": {"source": "public_id", "validators": []},
        }


class DeviceSerializer(serializers.ModelSerializer):
    site = serializers.CharField(source="site.public_id", read_only=True)
    checkin_interval_seconds = serializers.SerializerMethodField()

    class Meta:
        model = Device
        fields = [
            "device_id",
            "name",
            "device_type",
            "site",
            "ip_address",
            "is_simulated",
            "agent_version",
            "status",
            "last_seen",
            "checkin_interval_seconds",
            "attributes",
            "created_at",
            "decommissioned_at",
        ]
        read_only_fields = fields
        extra_kwargs = {"device_id": {"source": "public_id"}}  # the API's name of public_id

    def get_checkin_interval_seconds(self, device: Device) -> int:
        return int(device.checkin_interval.total_seconds())


def device_id_not_reserved(value: str) -> str:
    if value.lower() in RESERVED_DEVICE_IDS:
        raise serializers.ValidationError(f"{value!r} is reserved.")
    return value


def validate_attributes_size(value: dict) -> dict:
    size = len(json.dumps(value))
    if size > settings.DEVICE_ATTRIBUTES_MAX_BYTES:
        raise serializers.ValidationError(
            f"At most {settings.DEVICE_ATTRIBUTES_MAX_BYTES} bytes of JSON (got {size})."
        )
    return value


class DeviceRegisterSerializer(serializers.Serializer):
    device_id = serializers.CharField(
        source="public_id", max_length=64, validators=[device_id_validator, device_id_not_reserved]
    )
    name = serializers.CharField(max_length=200)
    device_type = serializers.SlugField(max_length=32)
    ip_address = serializers.IPAddressField(required=False, allow_null=True)
    is_simulated = serializers.BooleanField(required=False, default=False)
    agent_version = serializers.CharField(max_length=32, required=False, allow_blank=True)
    checkin_interval_seconds = serializers.IntegerField(
        required=False, min_value=5, max_value=86400
    )
    attributes = serializers.DictField(required=False, validators=[validate_attributes_size])


class DeviceRegisteredSerializer(DeviceSerializer):
    api_key = serializers.CharField(help_text="Shown only in this response. Store it now.")
    key_id = serializers.CharField()

    class Meta(DeviceSerializer.Meta):
        fields = [*DeviceSerializer.Meta.fields, "api_key", "key_id"]


class IssuedKeySerializer(serializers.Serializer):
    device_id = serializers.CharField()
    api_key = serializers.CharField(help_text="Shown only in this response. Store it now.")
    key_id = serializers.CharField()
    old_key_valid_until = serializers.DateTimeField(allow_null=True)


class EnrollmentTokenCreateSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    max_uses = serializers.IntegerField(min_value=1, max_value=100_000, default=1)
    expires_in_hours = serializers.IntegerField(min_value=1, max_value=24 * 365, required=False)


class EnrollmentTokenIssuedSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="enrollment.pk")
    site = serializers.CharField(source="enrollment.site.public_id")
    label = serializers.CharField(source="enrollment.label")
    token = serializers.CharField(help_text="Shown only in this response.")
    expires_at = serializers.DateTimeField(source="enrollment.expires_at")
    max_uses = serializers.IntegerField(source="enrollment.max_uses")


class HeartbeatSerializer(serializers.Serializer):
    attributes = serializers.DictField(
        required=False,
        validators=[validate_attributes_size],
        help_text="State to show operators. HOMEPOT's agent includes `instance_id`, "
        "random per agent process start: two instances taking turns are recorded "
        "as a `device.identity_conflict` event.",
    )
    agent_version = serializers.CharField(max_length=32, required=False)

    def validate_attributes(self, value: dict) -> dict:
        instance_id = value.get("instance_id")
        if instance_id is not None and not (
            isinstance(instance_id, str) and 1 <= len(instance_id) <= 64
        ):
            raise serializers.ValidationError({"instance_id": "A string of 1-64 characters."})
        return value


class HeartbeatResponseSerializer(serializers.Serializer):
    device_id = serializers.CharField()
    server_time = serializers.DateTimeField()
