"""The API's shapes of alert rules, alerts, silences, notification channels and
deliveries. Input serializers check shapes and types; what makes a rule valid as
a whole is analytics.alerting.rules (shared with the admin)."""

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from analytics.alerting import rules
from analytics.alerting.services import SILENCE_FROM_ALERT_MAX_HOURS
from analytics.fields import METRIC_NAME_HELP, StrictFloatField
from analytics.models import (
    Alert,
    AlertRule,
    NotificationChannel,
    NotificationDelivery,
    Severity,
    Silence,
)
from devices.models import Device, Event, Site
from homepot.api import StrictSerializer
from homepot.validators import BoundedDateTimeField

ID_MAX = 2**31 - 1  # the primary keys are 32-bit
MAX_ADDRESSES_PER_CHANNEL = 50


def _site_field(**kwargs: Any) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        slug_field="public_id", queryset=Site.objects.all(), allow_null=True, **kwargs
    )


def _device_field(**kwargs: Any) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        slug_field="public_id", queryset=Device.objects.all(), allow_null=True, **kwargs
    )


def _seconds_field(help_text: str) -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=0, max_value=rules.DURATION_MAX_SECONDS, default=0, help_text=help_text
    )


def _user_field() -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)


def _public_id_field() -> serializers.SlugRelatedField:
    """A site or device, by its public id (null: none)."""
    return serializers.SlugRelatedField(slug_field="public_id", read_only=True, allow_null=True)


# --- Alert rules ----------------------------------------------------------------------------


class AlertRuleInputSerializer(StrictSerializer):
    """A rule to create (defaults apply) or the fields of a PATCH (pass the rule
    as the instance: the rule's values fill in what the PATCH leaves out)."""

    name = serializers.CharField(max_length=200)
    source = serializers.ChoiceField(
        choices=AlertRule.Source.choices,
        default=AlertRule.Source.METRIC,
        help_text="`metric`: a condition on the latest value of `metric`. The others are "
        "built-in device conditions and ignore metric, condition and thresholds.",
    )
    metric = serializers.CharField(
        max_length=100, allow_blank=True, default="", help_text=METRIC_NAME_HELP
    )
    condition = serializers.ChoiceField(
        choices=AlertRule.Condition.choices,
        default=AlertRule.Condition.GT,
        help_text="`absent`: no value for for_seconds (needs for_seconds > 0, no threshold).",
    )
    threshold = StrictFloatField(allow_null=True, default=None)
    for_seconds = _seconds_field("The condition must hold this long before the alert fires.")
    severity = serializers.ChoiceField(choices=Severity.choices, default=Severity.WARNING)
    site = _site_field(default=None, help_text="Scope: a site id (empty: any).")
    device_type = serializers.SlugField(
        max_length=32, allow_blank=True, default="", help_text="Scope: a device type."
    )
    device = _device_field(default=None, help_text="Scope: a device id.")
    cooldown_seconds = _seconds_field("No new alert for a device this long after one resolved.")
    repeat_seconds = _seconds_field("A reminder this often while firing; 0: none.")
    auto_resolve = serializers.BooleanField(default=True)
    resolve_threshold = StrictFloatField(
        allow_null=True,
        default=None,
        help_text="Hysteresis: a firing alert resolves only past this value (gt/ge: "
        "below it, a value ≤ threshold; lt/le: above it, ≥ threshold). Empty: when the "
        "condition stops holding. Not for eq, ne or absent.",
    )
    channels = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX),
        max_length=rules.MAX_CHANNELS_PER_RULE,
        default=list,
        help_text="Notification channel ids.",
    )
    enabled = serializers.BooleanField(default=True)

    def validate_channels(self, ids: list[int]) -> list[NotificationChannel]:
        return channels_resolve(ids)

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        rule: AlertRule | None = self.instance
        base = rules.alert_rule_values(rule) if rule else rules.alert_rule_defaults()
        values = {**base, **{k: v for k, v in attrs.items() if k != "channels"}}
        errors = rules.alert_rule_errors(values, rule=rule)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


def channels_resolve(ids: list[int]) -> list[NotificationChannel]:
    """The channels with these ids (each once), or a ValidationError naming the unknown."""
    unique = list(dict.fromkeys(ids))
    found = NotificationChannel.objects.in_bulk(unique)
    unknown = [str(pk) for pk in unique if pk not in found]
    if unknown:
        raise serializers.ValidationError(f"Unknown notification channel: {', '.join(unknown)}.")
    return [found[pk] for pk in unique]


class AlertRuleSerializer(serializers.ModelSerializer):
    builtin = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="The built-in rule's key; null for operators' rules.",
    )
    site = _public_id_field()
    device_type = serializers.CharField(read_only=True, help_text="Empty: any.")
    device = _public_id_field()
    channels = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = AlertRule
        fields = ["id", "builtin", *rules.RULE_FIELDS, "created_at", "updated_at"]
        read_only_fields = fields


# --- Alerts -----------------------------------------------------------------------------------


class AlertRuleBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = AlertRule
        fields = ["id", "name", "source", "metric", "condition", "threshold"]
        read_only_fields = fields


class AlertDeviceSerializer(serializers.ModelSerializer):
    device_id = serializers.CharField(source="public_id")
    site = serializers.CharField(source="site.public_id")

    class Meta:
        model = Device
        fields = ["device_id", "name", "site"]
        read_only_fields = fields


class AlertEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = ["id", "kind", "message", "created_at"]
        read_only_fields = fields


class AlertSerializer(serializers.ModelSerializer):
    rule = AlertRuleBriefSerializer()
    device = AlertDeviceSerializer()
    acknowledged_by = _user_field()
    resolved_by = _user_field()

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "device",
            "state",
            "severity",
            "value",
            "last_value",
            "message",
            "fired_at",
            "acknowledged_at",
            "acknowledged_by",
            "ack_note",
            "resolved_at",
            "resolved_by",
            "last_notified_at",
            "reminders_sent",
        ]
        read_only_fields = fields


class AlertDetailSerializer(AlertSerializer):
    events = AlertEventSerializer(many=True, help_text="Oldest first.")

    class Meta(AlertSerializer.Meta):
        fields = [*AlertSerializer.Meta.fields, "events"]
        read_only_fields = fields


class AlertAckSerializer(StrictSerializer):
    note = serializers.CharField(max_length=500, allow_blank=True, default="")


class AlertSilenceSerializer(StrictSerializer):
    hours = StrictFloatField(help_text="From now, more than 0 and at most a year (8760).")
    reason = serializers.CharField(
        max_length=500, allow_blank=True, default="", help_text="Default: the alert's id."
    )

    def validate_hours(self, hours: float) -> float:
        if not 0 < hours <= SILENCE_FROM_ALERT_MAX_HOURS:
            raise serializers.ValidationError(
                f"More than 0 and at most {SILENCE_FROM_ALERT_MAX_HOURS} hours."
            )
        return hours


# --- Silences ---------------------------------------------------------------------------------


class SilenceInputSerializer(StrictSerializer):
    site = _site_field(default=None, help_text="A site id: every device of the site.")
    device = _device_field(default=None, help_text="A device id.")
    rule = serializers.PrimaryKeyRelatedField(
        queryset=AlertRule.objects.all(), allow_null=True, default=None, help_text="A rule id."
    )
    fleet_wide = serializers.BooleanField(
        default=False,
        help_text="Silence every alert: only with no site, device or rule, and only if asked.",
    )
    starts_at = BoundedDateTimeField(default=timezone.now, help_text="Default: now.")
    ends_at = BoundedDateTimeField(help_text="After starts_at, in the future, within a year.")
    reason = serializers.CharField(max_length=500)


class SilenceSerializer(serializers.ModelSerializer):
    site = _public_id_field()
    device = _public_id_field()
    rule = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    created_by = _user_field()
    active = serializers.SerializerMethodField()

    class Meta:
        model = Silence
        fields = [
            "id",
            "site",
            "device",
            "rule",
            "starts_at",
            "ends_at",
            "reason",
            "active",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_active(self, silence: Silence) -> bool:
        return silence.starts_at <= timezone.now() < silence.ends_at


# --- Notification channels and deliveries ----------------------------------------------------


class NotificationChannelChangeSerializer(StrictSerializer):
    """What a PATCH may change (the kind is fixed). The addresses and the URL are
    checked by analytics.notifications.channels, as for the admin."""

    name = serializers.CharField(max_length=100)
    addresses = serializers.ListField(
        child=serializers.CharField(max_length=254),
        max_length=MAX_ADDRESSES_PER_CHANNEL,
        default=list,
        help_text="Kind email: where to send (1 to 50 addresses).",
    )
    url = serializers.CharField(
        max_length=500,
        allow_blank=True,
        default="",
        help_text="Kind webhook: where to POST (http or https; LAN hosts welcome unless "
        "NOTIFY_WEBHOOK_ALLOW_PRIVATE is off).",
    )
    min_severity = serializers.ChoiceField(
        choices=Severity.choices,
        default=Severity.INFO,
        help_text="Only alerts at least this severe are sent here.",
    )
    enabled = serializers.BooleanField(default=True)


class NotificationChannelInputSerializer(NotificationChannelChangeSerializer):
    kind = serializers.ChoiceField(choices=NotificationChannel.Kind.choices)


class NotificationChannelSerializer(serializers.ModelSerializer):
    url = serializers.CharField(read_only=True, help_text="Kind webhook; empty for email.")
    created_by = _user_field()

    class Meta:
        model = NotificationChannel
        # Never the secret: it is shown once, in the response that creates it.
        fields = [
            "id",
            "name",
            "kind",
            "addresses",
            "url",
            "min_severity",
            "enabled",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class NotificationChannelCreatedSerializer(NotificationChannelSerializer):
    """The channel and, from the context, the secret just issued (the stored one is
    never read here)."""

    secret = serializers.SerializerMethodField(
        help_text="Kind webhook: the signing secret (`whsec_...`), shown only in this "
        "response. Store it now. Null for email channels.",
    )

    class Meta(NotificationChannelSerializer.Meta):
        fields = [*NotificationChannelSerializer.Meta.fields, "secret"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_secret(self, channel: NotificationChannel) -> str | None:
        return self.context["secret"]


class NotificationDeliverySerializer(serializers.ModelSerializer):
    channel = serializers.PrimaryKeyRelatedField(read_only=True)
    alert = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="Null for a test notification."
    )

    class Meta:
        model = NotificationDelivery
        fields = [
            "id",
            "channel",
            "alert",
            "event_type",
            "sequence",
            "message_id",
            "status",
            "attempts",
            "last_error",
            "last_status_code",
            "created_at",
            "next_attempt_at",
            "delivered_at",
        ]
        read_only_fields = fields


class NotificationDeliveryDetailSerializer(NotificationDeliverySerializer):
    class Meta(NotificationDeliverySerializer.Meta):
        fields = [*NotificationDeliverySerializer.Meta.fields, "payload"]
        read_only_fields = fields
