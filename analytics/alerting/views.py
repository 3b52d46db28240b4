"""The alerting API: rules, alerts (acknowledge, resolve, silence), silences,
notification channels (and a test notification) and the delivery log.

Views parse, call a service (analytics.alerting.rules and .services,
analytics.notifications) and serialise."""

import django_filters
from django import forms
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.alerting import rules, services
from analytics.alerting.serializers import (
    AlertAckSerializer,
    AlertDetailSerializer,
    AlertRuleInputSerializer,
    AlertRuleSerializer,
    AlertSerializer,
    AlertSilenceSerializer,
    NotificationChannelChangeSerializer,
    NotificationChannelCreatedSerializer,
    NotificationChannelInputSerializer,
    NotificationChannelSerializer,
    NotificationDeliveryDetailSerializer,
    NotificationDeliverySerializer,
    SilenceInputSerializer,
    SilenceSerializer,
)
from analytics.models import (
    Alert,
    AlertRule,
    NotificationChannel,
    NotificationDelivery,
    Severity,
    Silence,
)
from analytics.notifications import channels as notification_channels
from devices.models import Event
from homepot.api import HasPermissions
from homepot.errors import NotFoundError

OPEN = "open"  # the state filter's name for firing or acknowledged


def _perms(model: str, **methods: str) -> dict[str, list[str]]:
    """{"GET": ["analytics.view_<model>"], "POST": ["analytics.add_<model>"], ...}"""
    return {method: [f"analytics.{action}_{model}"] for method, action in methods.items()}


def _object_get(queryset: QuerySet, pk: int, label: str) -> object:
    found = queryset.filter(pk=pk).first()
    if found is None:
        raise NotFoundError(f"{label} {pk} not found.")
    return found


class IdFilter(django_filters.Filter):
    """An integer id: anything else is a 400, never a database error."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 (django-filter)
        super().__init__(*args, min_value=1, max_value=2**63 - 1, **kwargs)


# --- Alert rules ----------------------------------------------------------------------------

RULE_EXAMPLES = [
    OpenApiExample(
        "CPU hot for 5 minutes",
        value={
            "name": "CPU above 90 %",
            "metric": "cpu_percent",
            "condition": "gt",
            "threshold": 90,
            "for_seconds": 300,
            "severity": "critical",
            "site": "lab-1",
            "resolve_threshold": 80,
            "channels": [1],
        },
        request_only=True,
    ),
    OpenApiExample(
        "No temperature for 10 minutes",
        value={
            "name": "BME680 silent",
            "metric": "bme680.temperature",
            "condition": "absent",
            "for_seconds": 600,
            "device_type": "lab_monitor",
        },
        request_only=True,
    ),
]


def alert_rules() -> QuerySet:
    return AlertRule.objects.select_related("site", "device").prefetch_related("channels")


def alert_rule_get(pk: int) -> AlertRule:
    return _object_get(alert_rules(), pk, "Alert rule")


class AlertRuleFilter(django_filters.FilterSet):
    site = django_filters.CharFilter(field_name="site__public_id")
    device = django_filters.CharFilter(field_name="device__public_id")

    class Meta:
        model = AlertRule
        fields = ["source", "severity", "enabled", "site", "device"]


class AlertRuleListCreateApi(generics.ListAPIView):
    permission_classes = [HasPermissions]
    required_permissions = _perms("alertrule", GET="view", POST="add")
    serializer_class = AlertRuleSerializer
    filterset_class = AlertRuleFilter
    queryset = alert_rules()

    @extend_schema(
        request=AlertRuleInputSerializer,
        responses={201: AlertRuleSerializer},
        examples=RULE_EXAMPLES,
        description="Create a rule. A metric rule needs a metric name and a threshold "
        "(`absent`: for_seconds > 0 instead); resolve_threshold must lie on the resolving "
        "side of the threshold. Audited.",
    )
    def post(self, request: Request) -> Response:
        serializer = AlertRuleInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rule = rules.alert_rule_create(actor=request.user, **serializer.validated_data)
        return Response(
            AlertRuleSerializer(alert_rule_get(rule.pk)).data, status=status.HTTP_201_CREATED
        )


class AlertRuleDetailApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = _perms("alertrule", GET="view", PATCH="change", DELETE="delete")
    error_statuses = (409,)  # deleting a built-in rule, or one with open alerts

    @extend_schema(responses=AlertRuleSerializer)
    def get(self, request: Request, rule_id: int) -> Response:
        return Response(AlertRuleSerializer(alert_rule_get(rule_id)).data)

    @extend_schema(
        request=AlertRuleInputSerializer,
        responses=AlertRuleSerializer,
        examples=[
            OpenApiExample("Disable", value={"enabled": False}, request_only=True),
            OpenApiExample(
                "Raise the threshold",
                value={"threshold": 95, "resolve_threshold": 85},
                request_only=True,
            ),
        ],
        description="Change some fields; the rule must be valid as a whole afterwards. "
        "Built-in rules can be changed and disabled but keep their source. A change of "
        "condition or scope restarts pending for_seconds periods. Audited.",
    )
    def patch(self, request: Request, rule_id: int) -> Response:
        rule = alert_rule_get(rule_id)
        serializer = AlertRuleInputSerializer(rule, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        rules.alert_rule_update(actor=request.user, rule=rule, changes=serializer.validated_data)
        return Response(AlertRuleSerializer(alert_rule_get(rule_id)).data)

    @extend_schema(
        responses={204: None},
        description="Delete a rule and its resolved alerts (their events stay). Audited. "
        "409 `builtin_rule` for a built-in rule (disable it instead); 409 "
        "`rule_has_open_alerts` while it has open alerts (disable it: they resolve at the "
        "next evaluation, notified; then delete it).",
    )
    def delete(self, request: Request, rule_id: int) -> Response:
        rules.alert_rule_delete(actor=request.user, rule=alert_rule_get(rule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Alerts ---------------------------------------------------------------------------------


def alerts() -> QuerySet:
    return Alert.objects.select_related(
        "rule", "device__site", "acknowledged_by", "resolved_by"
    ).order_by("-fired_at", "-id")


def alert_get(pk: int) -> Alert:
    events = Event.objects.order_by("created_at", "id")
    queryset = alerts().prefetch_related(Prefetch("events", queryset=events))
    return _object_get(queryset, pk, "Alert")


class AlertFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(
        choices=[*Alert.State.choices, (OPEN, "firing or acknowledged")],
        method="state_filter",
    )
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    device = django_filters.CharFilter(field_name="device__public_id", help_text="A device id.")
    site = django_filters.CharFilter(field_name="device__site__public_id", help_text="A site id.")
    rule = IdFilter(field_name="rule_id", help_text="A rule id.")

    class Meta:
        model = Alert
        fields = ["state", "severity", "device", "site", "rule"]

    def state_filter(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value == OPEN:
            return queryset.filter(state__in=Alert.OPEN_STATES)
        return queryset.filter(state=value)


class AlertListApi(generics.ListAPIView):
    """Alerts, newest first."""

    permission_classes = [HasPermissions]
    required_permissions = _perms("alert", GET="view")
    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    queryset = alerts()


class AlertDetailApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = _perms("alert", GET="view")

    @extend_schema(responses=AlertDetailSerializer, description="An alert with its events.")
    def get(self, request: Request, alert_id: int) -> Response:
        return Response(AlertDetailSerializer(alert_get(alert_id)).data)


class AlertAckApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = _perms("alert", POST="change")
    error_statuses = (409,)  # not firing

    @extend_schema(
        request=AlertAckSerializer,
        responses=AlertDetailSerializer,
        examples=[OpenApiExample("With a note", value={"note": "on it"}, request_only=True)],
        description="Acknowledge a firing alert: no more reminders; it stays open until it "
        "resolves. 409 if it is not firing.",
    )
    def post(self, request: Request, alert_id: int) -> Response:
        serializer = AlertAckSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.alert_acknowledge(
            alert=alert_get(alert_id), actor=request.user, **serializer.validated_data
        )
        return Response(AlertDetailSerializer(alert_get(alert_id)).data)


class AlertResolveApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = _perms("alert", POST="change")
    error_statuses = (409,)  # already resolved

    @extend_schema(
        request=None,
        responses=AlertDetailSerializer,
        description="Resolve an open alert by hand. 409 if it is resolved already.",
    )
    def post(self, request: Request, alert_id: int) -> Response:
        services.alert_resolve(alert=alert_get(alert_id), actor=request.user)
        return Response(AlertDetailSerializer(alert_get(alert_id)).data)


class AlertSilenceApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = _perms("silence", POST="add")
    error_statuses = (409,)

    @extend_schema(
        request=AlertSilenceSerializer,
        responses={201: SilenceSerializer},
        examples=[
            OpenApiExample(
                "A day", value={"hours": 24, "reason": "replacing the fan"}, request_only=True
            )
        ],
        description="Silence this alert's rule on its device for `hours` from now (one "
        "click): the alert stays open, notifications stop.",
    )
    def post(self, request: Request, alert_id: int) -> Response:
        serializer = AlertSilenceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        silence = services.silence_from_alert(
            alert=alert_get(alert_id), actor=request.user, **serializer.validated_data
        )
        return Response(
            SilenceSerializer(silence_get(silence.pk)).data, status=status.HTTP_201_CREATED
        )


# --- Silences -------------------------------------------------------------------------------


def silences() -> QuerySet:
    return Silence.objects.select_related("site", "device", "created_by")


def silence_get(pk: int) -> Silence:
    return _object_get(silences(), pk, "Silence")


class SilenceFilter(django_filters.FilterSet):
    active = django_filters.BooleanFilter(
        method="active_filter", help_text="true: in force now; false: ended or not yet begun."
    )
    site = django_filters.CharFilter(field_name="site__public_id")
    device = django_filters.CharFilter(field_name="device__public_id")
    rule = IdFilter(field_name="rule_id")

    class Meta:
        model = Silence
        fields = ["active", "site", "device", "rule"]

    def active_filter(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        now = timezone.now()
        in_force = Q(starts_at__lte=now, ends_at__gt=now)
        return queryset.filter(in_force if value else ~in_force)


class SilenceListCreateApi(generics.ListAPIView):
    permission_classes = [HasPermissions]
    required_permissions = _perms("silence", GET="view", POST="add")
    serializer_class = SilenceSerializer
    filterset_class = SilenceFilter
    queryset = silences()

    @extend_schema(
        request=SilenceInputSerializer,
        responses={201: SilenceSerializer},
        examples=[
            OpenApiExample(
                "Maintenance of a site",
                value={
                    "site": "lab-1",
                    "starts_at": "2030-05-01T08:00:00Z",
                    "ends_at": "2030-05-01T12:00:00Z",
                    "reason": "power works",
                },
                request_only=True,
            )
        ],
        description="A maintenance window: alerts it covers (every given field must match) "
        "still open but notify no one. Audited.",
    )
    def post(self, request: Request) -> Response:
        serializer = SilenceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        silence = services.silence_create(actor=request.user, **serializer.validated_data)
        return Response(
            SilenceSerializer(silence_get(silence.pk)).data, status=status.HTTP_201_CREATED
        )


class SilenceDetailApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = _perms("silence", GET="view", DELETE="delete")

    @extend_schema(responses=SilenceSerializer)
    def get(self, request: Request, silence_id: int) -> Response:
        return Response(SilenceSerializer(silence_get(silence_id)).data)

    @extend_schema(responses={204: None}, description="End the silence now (deletes it). Audited.")
    def delete(self, request: Request, silence_id: int) -> Response:
        services.silence_delete(silence=silence_get(silence_id), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Notification channels ------------------------------------------------------------------


def channels() -> QuerySet:
    return NotificationChannel.objects.select_related("created_by")


def channel_get(pk: int) -> NotificationChannel:
    return _object_get(channels(), pk, "Notification channel")


class NotificationChannelListCreateApi(generics.ListAPIView):
    permission_classes = [HasPermissions]
    required_permissions = _perms("notificationchannel", GET="view", POST="add")
    error_statuses = (409,)  # the name is taken
    serializer_class = NotificationChannelSerializer
    queryset = channels()
    filterset_fields = ["kind", "enabled"]

    @extend_schema(
        request=NotificationChannelInputSerializer,
        responses={201: NotificationChannelCreatedSerializer},
        examples=[
            OpenApiExample(
                "Webhook",
                value={
                    "name": "lab receiver",
                    "kind": "webhook",
                    "url": "http://10.0.0.5:9000/hooks",
                    "min_severity": "warning",
                },
                request_only=True,
            ),
            OpenApiExample(
                "Email",
                value={"name": "on call", "kind": "email", "addresses": ["oncall@example.org"]},
                request_only=True,
            ),
        ],
        description="Create a channel. A webhook channel's signing `secret` (`whsec_...`) "
        "is in this response only. Audited.",
    )
    def post(self, request: Request) -> Response:
        serializer = NotificationChannelInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        channel, secret = notification_channels.notification_channel_create(
            actor=request.user, **serializer.validated_data
        )
        body = NotificationChannelCreatedSerializer(
            channel_get(channel.pk), context={"secret": secret}
        ).data
        return Response(body, status=status.HTTP_201_CREATED)


class NotificationChannelDetailApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = _perms(
        "notificationchannel", GET="view", PATCH="change", DELETE="delete"
    )
    error_statuses = (409,)  # the name is taken

    @extend_schema(responses=NotificationChannelSerializer)
    def get(self, request: Request, channel_id: int) -> Response:
        return Response(NotificationChannelSerializer(channel_get(channel_id)).data)

    @extend_schema(
        request=NotificationChannelChangeSerializer,
        responses=NotificationChannelSerializer,
        examples=[OpenApiExample("Pause", value={"enabled": False}, request_only=True)],
        description="Change some fields (the kind is fixed; the secret stays). Audited.",
    )
    def patch(self, request: Request, channel_id: int) -> Response:
        channel = channel_get(channel_id)
        serializer = NotificationChannelChangeSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        notification_channels.notification_channel_update(
            channel=channel, actor=request.user, changes=serializer.validated_data
        )
        return Response(NotificationChannelSerializer(channel_get(channel_id)).data)

    @extend_schema(
        responses={204: None},
        description="Delete the channel and its delivery log; rules stop using it. Audited.",
    )
    def delete(self, request: Request, channel_id: int) -> Response:
        rules.notification_channel_delete(channel=channel_get(channel_id), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class NotificationChannelTestApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = _perms("notificationchannel", POST="change")

    @extend_schema(
        request=None,
        responses=NotificationDeliveryDetailSerializer,
        description="Send a test notification (event type `test`) now, one attempt within "
        "NOTIFY_TIMEOUT_SECONDS, also to a disabled channel. 200 whatever the outcome: the "
        "delivery says it (`delivered` or `failed` with the error); it is in the log too.",
    )
    def post(self, request: Request, channel_id: int) -> Response:
        delivery = notification_channels.notification_channel_test(
            channel=channel_get(channel_id), actor=request.user
        )
        return Response(NotificationDeliveryDetailSerializer(delivery_get(delivery.pk)).data)


class NotificationChannelRotateSecretApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = _perms("notificationchannel", POST="change")

    @extend_schema(
        request=None,
        responses=NotificationChannelCreatedSerializer,
        description="A new signing secret for a webhook channel, in this response only; "
        "deliveries from now on (retries too) are signed with it. An email channel: 400 "
        "`not_a_webhook`. Audited (without the secret).",
    )
    def post(self, request: Request, channel_id: int) -> Response:
        secret = notification_channels.notification_channel_secret_rotate(
            channel=channel_get(channel_id), actor=request.user
        )
        body = NotificationChannelCreatedSerializer(
            channel_get(channel_id), context={"secret": secret}
        ).data
        return Response(body)


# --- Notification deliveries ----------------------------------------------------------------


def deliveries() -> QuerySet:
    return NotificationDelivery.objects.order_by("-created_at", "-id")


def delivery_get(pk: int) -> NotificationDelivery:
    return _object_get(deliveries(), pk, "Notification delivery")


class NotificationDeliveryFilter(django_filters.FilterSet):
    channel = IdFilter(field_name="channel_id", help_text="A channel id.")
    alert = IdFilter(field_name="alert_id", help_text="An alert id.")

    class Meta:
        model = NotificationDelivery
        fields = ["channel", "alert", "status", "event_type"]


class NotificationDeliveryListApi(generics.ListAPIView):
    """The delivery log, newest first (without the payloads: see a delivery's detail)."""

    permission_classes = [HasPermissions]
    required_permissions = _perms("notificationdelivery", GET="view")
    serializer_class = NotificationDeliverySerializer
    filterset_class = NotificationDeliveryFilter
    # Listing never reads the payloads, however large.
    queryset = deliveries().defer("payload")


class NotificationDeliveryDetailApi(APIView):
    permission_classes = [HasPermissions]
    required_permissions = _perms("notificationdelivery", GET="view")

    @extend_schema(responses=NotificationDeliveryDetailSerializer)
    def get(self, request: Request, delivery_id: int) -> Response:
        return Response(NotificationDeliveryDetailSerializer(delivery_get(delivery_id)).data)
