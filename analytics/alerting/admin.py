"""The admin of alerting: rules, alerts (acknowledge, resolve, silence), silences,
notification channels (secret shown once, "Send test") and the delivery log, and
the open alerts panel of a device's page (registered in analytics/admin.py).

Every write goes through the services the API calls, which audit it.
"""

from datetime import datetime

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from analytics.alerting import rules, services
from analytics.models import (
    SEVERITY_RANK,
    Alert,
    AlertRule,
    NotificationChannel,
    NotificationDelivery,
    Severity,
    Silence,
)
from analytics.notifications import channels as notification_channels
from devices.admin import ReadOnlyAdmin, StrictObjectIdAdmin, show_secrets_once
from devices.models import Device, Event
from homepot.errors import ServiceError

SILENCE_ACTION_HOURS = 24
# Readable at a glance, as the SSH statuses are.
SEVERITY_COLOURS = {
    Severity.INFO: "#1565c0",
    Severity.WARNING: "#ef6c00",
    Severity.CRITICAL: "#c62828",
}


def severity_badge(severity: str) -> SafeString:
    return format_html(
        '<span class="homepot-severity" data-severity="{}" style="background:{};color:#fff;'
        'padding:1px 6px;border-radius:3px">{}</span>',
        severity,
        SEVERITY_COLOURS[Severity(severity)],
        Severity(severity).label,
    )


def rule_scope(rule: AlertRule) -> str:
    """ "site lab-1, type lab_monitor" or "every device"."""
    parts = [
        f"site {rule.site.public_id}" if rule.site_id else "",
        f"type {rule.device_type}" if rule.device_type else "",
        f"device {rule.device.public_id}" if rule.device_id else "",
    ]
    return ", ".join(part for part in parts if part) or "every device"


def rule_condition(rule: AlertRule) -> str:
    """ "cpu_percent > 90 for 300 s", "no bme680.temperature for 600 s", "device offline"."""
    if rule.source != AlertRule.Source.METRIC:
        return AlertRule.Source(rule.source).label
    held = f" for {rule.for_seconds} s" if rule.for_seconds else ""
    if rule.condition == AlertRule.Condition.ABSENT:
        return f"no {rule.metric}{held}"
    symbol = AlertRule.Condition(rule.condition).label
    return f"{rule.metric} {symbol} {rule.threshold:g}{held}"


def _post_only(view):  # noqa: ANN001, ANN202 (a view decorator)
    return require_POST(view)


# --- Rules --------------------------------------------------------------------------------------


class AlertRuleForm(forms.ModelForm):
    """A rule's fields, valid as a whole by the rules the API applies."""

    for_seconds = forms.IntegerField(min_value=0, max_value=rules.DURATION_MAX_SECONDS, initial=0)
    cooldown_seconds = forms.IntegerField(
        min_value=0, max_value=rules.DURATION_MAX_SECONDS, initial=0
    )
    repeat_seconds = forms.IntegerField(
        min_value=0,
        max_value=rules.DURATION_MAX_SECONDS,
        initial=0,
        help_text="A reminder this often while firing and not acknowledged; 0: none.",
    )

    class Meta:
        model = AlertRule
        fields = rules.RULE_FIELDS
        widgets = {"channels": forms.CheckboxSelectMultiple}
        help_texts = {
            "metric": "For source “a metric's latest value”: the metric's name "
            "(as on the device page), e.g. cpu_percent or bme680.temperature.",
            "threshold": "Not for `absent`, nor for the built-in sources.",
            "resolve_threshold": "Hysteresis. gt/ge: a firing alert resolves below this "
            "(≤ threshold); lt/le: above it (≥ threshold). Empty: when the condition stops "
            "holding. Not for eq, ne or absent.",
        }

    def clean(self) -> dict:
        cleaned = super().clean()
        rule = self.instance if self.instance.pk else None
        base = rules.alert_rule_values(rule) if rule else rules.alert_rule_defaults()
        names = [name for name in rules.RULE_FIELDS if name != "channels"]
        if any(name in self.fields and name not in cleaned for name in names):
            return cleaned  # a field is invalid by itself: its own error says why
        values = {name: cleaned.get(name, base[name]) for name in names}
        for field, errors in rules.alert_rule_errors(values, rule=rule).items():
            for error in errors:
                self.add_error(field if field in self.fields else None, error)
        return cleaned


@admin.register(AlertRule)
class AlertRuleAdmin(StrictObjectIdAdmin):
    form = AlertRuleForm
    list_display = [
        "name",
        "source",
        "metric",
        "condition_shown",
        "threshold",
        "severity_shown",
        "scope",
        "enabled",
        "builtin",
    ]
    list_filter = ["source", "severity", "enabled", "site"]
    list_select_related = ["site", "device"]
    search_fields = ["name", "metric"]
    autocomplete_fields = ["device"]
    readonly_fields = ["builtin", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "source", "severity", "enabled"]}),
        (
            "Condition",
            {"fields": ["metric", "condition", "threshold", "for_seconds"]},
        ),
        ("Scope (empty: any)", {"fields": ["site", "device_type", "device"]}),
        (
            "Resolving and repeating",
            {"fields": ["auto_resolve", "resolve_threshold", "cooldown_seconds", "repeat_seconds"]},
        ),
        ("Notify", {"fields": ["channels"]}),
        ("Record", {"fields": ["builtin", "created_at", "updated_at"]}),
    ]

    @admin.display(description="condition")
    def condition_shown(self, rule: AlertRule) -> str:
        return rule_condition(rule)

    @admin.display(description="severity", ordering="severity")
    def severity_shown(self, rule: AlertRule) -> SafeString:
        return severity_badge(rule.severity)

    @admin.display(description="scope")
    def scope(self, rule: AlertRule) -> str:
        return rule_scope(rule)

    def get_readonly_fields(self, request: HttpRequest, obj: AlertRule | None = None) -> list[str]:
        # A built-in rule keeps its source (it is what the rule is about).
        if obj is not None and obj.builtin:
            return [*self.readonly_fields, "source"]
        return list(self.readonly_fields)

    def has_delete_permission(self, request: HttpRequest, obj: AlertRule | None = None) -> bool:
        if obj is not None:
            try:  # a built-in rule, or one with open alerts: disable it instead
                rules.rule_deletable_check(obj)
            except ServiceError:
                return False
        return super().has_delete_permission(request, obj)

    # -- writes: through analytics.alerting.rules --

    def save_model(self, request: HttpRequest, obj: AlertRule, form, change: bool) -> None:  # noqa: ANN001
        data = form.cleaned_data
        if change:
            changes = {name: data[name] for name in form.changed_data if name in rules.RULE_FIELDS}
            rules.alert_rule_update(actor=request.user, rule=obj, changes=changes)
            return
        values = {name: data[name] for name in rules.RULE_FIELDS if name in data}
        rule = rules.alert_rule_create(actor=request.user, **values)
        obj.pk = rule.pk

    def save_related(self, request: HttpRequest, form, formsets: list, change: bool) -> None:  # noqa: ANN001
        pass  # the channels were set by the service, with the rest of the rule

    def delete_model(self, request: HttpRequest, obj: AlertRule) -> None:
        rules.alert_rule_delete(actor=request.user, rule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        # (A selection with a rule that cannot go never gets here: has_delete_permission
        # refuses it on the confirmation page.)
        with transaction.atomic():
            for rule in queryset:
                rules.alert_rule_delete(actor=request.user, rule=rule)


# --- Alerts -------------------------------------------------------------------------------------


class AlertEventInline(admin.TabularInline):
    model = Event
    fk_name = "alert"
    fields = ["created_at", "kind", "message"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["created_at", "id"]
    verbose_name_plural = "events"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class AlertDeliveryInline(admin.TabularInline):
    model = NotificationDelivery
    fields = [
        "created_at",
        "channel",
        "event_type",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "delivered_at",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "notifications"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("channel").defer("payload")

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(StrictObjectIdAdmin):
    """Alerts are raised and resolved by the evaluation; people acknowledge,
    resolve and silence them (actions and buttons), never edit them."""

    list_display = [
        "id",
        "rule",
        "device",
        "state",
        "severity_shown",
        "value",
        "fired_at",
        "acknowledged_by",
        "resolved_at",
    ]
    list_filter = ["state", "severity", "rule", "device__site"]
    list_select_related = ["rule", "device__site", "acknowledged_by"]
    search_fields = ["device__public_id", "device__name", "rule__name", "message"]
    date_hierarchy = "fired_at"
    actions = ["acknowledge", "resolve", "silence"]
    inlines = [AlertEventInline, AlertDeliveryInline]
    change_form_template = "admin/analytics/alerting/alert_change_form.html"
    fields = [
        "rule",
        "device_link",
        "state",
        "severity",
        "message",
        "value",
        "last_value",
        "fired_at",
        "acknowledged_at",
        "acknowledged_by",
        "ack_note",
        "resolved_at",
        "resolved_by",
        "last_notified_at",
        "reminders_sent",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False  # alerts are history: retention prunes resolved ones

    def has_silence_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("analytics.add_silence")

    @admin.display(description="severity", ordering="severity")
    def severity_shown(self, alert: Alert) -> SafeString:
        return severity_badge(alert.severity)

    @admin.display(description="device")
    def device_link(self, alert: Alert) -> SafeString:
        url = reverse("admin:devices_device_change", args=[alert.device_id])
        return format_html('<a href="{}">{}</a>', url, alert.device)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        # Every field is read-only: no save buttons, the page's own buttons act.
        hide = {"show_save": False, "show_save_and_continue": False, "show_save_as_new": False}
        context = {**(extra_context or {}), **hide, "silence_hours": SILENCE_ACTION_HOURS}
        context["can_silence"] = self.has_silence_permission(request)
        return super().changeform_view(request, object_id, form_url, context)

    # -- actions on selected alerts --

    @admin.action(description="Acknowledge the selected alerts", permissions=["change"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, "acknowledged", _acknowledge)

    @admin.action(description="Resolve the selected alerts", permissions=["change"])
    def resolve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, "resolved", _resolve)

    @admin.action(
        description=f"Silence for {SILENCE_ACTION_HOURS} hours (the alert's rule on its device)",
        permissions=["silence"],
    )
    def silence(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, f"silenced for {SILENCE_ACTION_HOURS} hours", _silence)

    def _apply(self, request: HttpRequest, queryset: QuerySet, done: str, act) -> None:  # noqa: ANN001
        succeeded = 0
        for alert in queryset.select_related("rule", "device"):
            try:
                act(alert, request)
            except ServiceError as exc:
                self.message_user(request, f"Alert {alert.pk}: {exc.message}", messages.WARNING)
            else:
                succeeded += 1
        if succeeded:
            self.message_user(request, f"{succeeded} alert(s) {done}.", messages.SUCCESS)

    # -- the buttons of an alert's page --

    def get_urls(self) -> list:
        def view(function):  # noqa: ANN001, ANN202
            return self.admin_site.admin_view(_post_only(function))

        return [
            path(
                "<path:object_id>/do/<slug:what>/",
                view(self.alert_button_view),
                name="analytics_alert_button",
            ),
            *super().get_urls(),
        ]

    def alert_button_view(self, request: HttpRequest, object_id: str, what: str) -> HttpResponse:
        act, permitted = {
            "acknowledge": (_acknowledge, self.has_change_permission),
            "resolve": (_resolve, self.has_change_permission),
            "silence": (_silence, lambda request, obj=None: self.has_silence_permission(request)),
        }.get(what, (None, None))
        if act is None:
            raise Http404(f"No such action: {what!r}.")
        alert = self.get_object(request, object_id)
        if alert is None:
            raise Http404(f"No alert with id {object_id!r}.")
        if not permitted(request, alert):
            raise PermissionDenied
        try:
            act(alert, request)
        except ServiceError as exc:
            messages.error(request, f"Not done: {exc.message}")
        else:
            messages.success(request, f"Alert {alert.pk}: done ({what}).")
        return HttpResponseRedirect(reverse("admin:analytics_alert_change", args=[alert.pk]))


def _acknowledge(alert: Alert, request: HttpRequest) -> None:
    note = request.POST.get("note", "")[:500] if "note" in request.POST else ""
    services.alert_acknowledge(alert=alert, actor=request.user, note=note)


def _resolve(alert: Alert, request: HttpRequest) -> None:
    services.alert_resolve(alert=alert, actor=request.user)


def _silence(alert: Alert, request: HttpRequest) -> None:
    services.silence_from_alert(
        alert=alert,
        actor=request.user,
        hours=SILENCE_ACTION_HOURS,
        reason=f"Silenced from alert {alert.pk} in the admin by {request.user}",
    )


# --- Silences -----------------------------------------------------------------------------------


class SilenceForm(forms.ModelForm):
    class Meta:
        model = Silence
        fields = ["site", "device", "rule", "starts_at", "ends_at", "reason"]
        help_texts = {"site": "Every given field must match an alert for the silence to cover it."}

    def clean(self) -> dict:
        cleaned = super().clean()
        starts, ends = cleaned.get("starts_at"), cleaned.get("ends_at")
        if starts and ends and ends <= starts:
            self.add_error("ends_at", "Must be after the start.")
        return cleaned


@admin.register(Silence)
class SilenceAdmin(StrictObjectIdAdmin):
    form = SilenceForm
    list_display = ["id", "reason", "site", "device", "rule", "starts_at", "ends_at", "active"]
    list_filter = ["site", "rule"]
    list_select_related = ["site", "device__site", "rule"]
    search_fields = ["reason", "device__public_id"]
    autocomplete_fields = ["device"]
    readonly_fields = ["created_by", "created_at"]

    @admin.display(description="in force now", boolean=True)
    def active(self, silence: Silence) -> bool:
        return silence.starts_at <= timezone.now() < silence.ends_at

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        return {"starts_at": timezone.now(), **super().get_changeform_initial_data(request)}

    def has_change_permission(self, request: HttpRequest, obj: Silence | None = None) -> bool:
        return False  # a silence is ended (deleted) and made anew, never edited

    def save_model(self, request: HttpRequest, obj: Silence, form, change: bool) -> None:  # noqa: ANN001
        silence = services.silence_create(actor=request.user, **form.cleaned_data)
        obj.pk = silence.pk

    def delete_model(self, request: HttpRequest, obj: Silence) -> None:
        services.silence_delete(silence=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        with transaction.atomic():
            for silence in queryset:
                services.silence_delete(silence=silence, actor=request.user)


# --- Notification channels ----------------------------------------------------------------------


class AddressesField(forms.CharField):
    """Email addresses, one per line (or separated by commas), as a list."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value: object) -> object:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: object) -> list[str]:
        text = super().to_python(value)
        return [part for part in text.replace(",", "\n").split() if part]

    def validate(self, value: list[str]) -> None:
        for address in value:
            forms.EmailField().clean(address)


class NotificationChannelForm(forms.ModelForm):
    """Checked by analytics.notifications.channels, as the API's input is."""

    addresses = AddressesField(
        required=False, help_text="Kind email: addresses, one per line.", max_length=20_000
    )
    # Not a field named url: the model's URLField validator would check it, and it
    # refuses the bare host names lab receivers have ("http://receiver:9000/").
    # The service checks the URL.
    webhook_url = forms.CharField(
        label="URL",
        required=False,
        max_length=500,
        help_text="Kind webhook: where to POST (http or https).",
    )

    class Meta:
        model = NotificationChannel
        fields = ["name", "kind", "addresses", "min_severity", "enabled"]

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 (Django form)
        super().__init__(*args, **kwargs)
        self.fields["webhook_url"].initial = self.instance.url

    def clean(self) -> dict:
        cleaned = super().clean()
        kind = cleaned.get("kind", self.instance.kind)
        if kind and "addresses" in cleaned and "webhook_url" in cleaned:
            field = "webhook_url" if kind == NotificationChannel.Kind.WEBHOOK else "addresses"
            try:
                cleaned["addresses"], cleaned["url"] = (
                    notification_channels.channel_target_validate(
                        kind=kind, addresses=cleaned["addresses"], url=cleaned["webhook_url"]
                    )
                )
            except ValidationError as exc:
                self.add_error(field, exc)
        return cleaned

    def service_values(self) -> dict:
        """The cleaned values under the names the channel services take."""
        names = ["name", "kind", "addresses", "url", "min_severity", "enabled"]
        return {name: self.cleaned_data[name] for name in names if name in self.cleaned_data}

    def service_changes(self) -> dict:
        changed = {"url" if n == "webhook_url" else n for n in self.changed_data} - {"kind"}
        return {name: value for name, value in self.service_values().items() if name in changed}


@admin.register(NotificationChannel)
class NotificationChannelAdmin(StrictObjectIdAdmin):
    form = NotificationChannelForm
    list_display = ["name", "kind", "destination", "min_severity", "enabled"]
    list_filter = ["kind", "enabled", "min_severity"]
    search_fields = ["name", "url"]
    readonly_fields = ["created_by", "created_at"]
    fields = [
        "name",
        "kind",
        "addresses",
        "webhook_url",
        "min_severity",
        "enabled",
        *readonly_fields,
    ]
    change_form_template = "admin/analytics/alerting/channel_change_form.html"

    def get_readonly_fields(
        self, request: HttpRequest, obj: NotificationChannel | None = None
    ) -> list[str]:
        # The kind is fixed once the channel exists (a webhook has a secret).
        return [*self.readonly_fields, "kind"] if obj else list(self.readonly_fields)

    @admin.display(description="sends to")
    def destination(self, channel: NotificationChannel) -> str:
        if channel.kind == NotificationChannel.Kind.WEBHOOK:
            return channel.url
        return ", ".join(channel.addresses)

    def save_model(
        self, request: HttpRequest, obj: NotificationChannel, form, change: bool
    ) -> None:  # noqa: ANN001
        try:
            if change:
                # The form has set the changes on obj already: the service gets the
                # stored channel, to see what changes.
                notification_channels.notification_channel_update(
                    channel=NotificationChannel.objects.get(pk=obj.pk),
                    actor=request.user,
                    changes=form.service_changes(),
                )
                return
            channel, secret = notification_channels.notification_channel_create(
                actor=request.user, **form.service_values()
            )
        except ServiceError as exc:
            # The form's checks passed; the service refused (a name taken meanwhile).
            raise _FormRefused(exc.message) from exc
        obj.pk = channel.pk
        request._homepot_secrets = [(channel.name, secret)] if secret else []

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _FormRefused as exc:
            messages.error(request, f"Not saved: {exc}")
            return HttpResponseRedirect(request.get_full_path())

    def response_add(
        self, request: HttpRequest, obj: NotificationChannel, post_url_continue=None
    ) -> HttpResponse:  # noqa: ANN001
        if not request._homepot_secrets:
            return super().response_add(request, obj, post_url_continue)
        return show_secrets_once(
            request,
            title=f"Signing secret of {obj.name}",
            label="channel",
            secrets=request._homepot_secrets,
            back_url=reverse("admin:analytics_notificationchannel_change", args=[obj.pk]),
        )

    def delete_model(self, request: HttpRequest, obj: NotificationChannel) -> None:
        rules.notification_channel_delete(channel=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        with transaction.atomic():
            for channel in queryset:
                rules.notification_channel_delete(channel=channel, actor=request.user)

    # -- "Send test" --

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(_post_only(self.send_test_view))
        return [
            path(
                "<path:object_id>/send-test/",
                view,
                name="analytics_notificationchannel_send_test",
            ),
            *super().get_urls(),
        ]

    def send_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        channel = self.get_object(request, object_id)
        if channel is None:
            raise Http404(f"No notification channel with id {object_id!r}.")
        if not self.has_change_permission(request, channel):
            raise PermissionDenied
        try:
            delivery = notification_channels.notification_channel_test(
                channel=channel, actor=request.user
            )
        except ServiceError as exc:
            messages.error(request, f"Test not sent: {exc.message}")
        else:
            url = reverse("admin:analytics_notificationdelivery_change", args=[delivery.pk])
            messages.success(
                request,
                format_html('Test notification queued: <a href="{}">follow its delivery</a>.', url),
            )
        return HttpResponseRedirect(
            reverse("admin:analytics_notificationchannel_change", args=[channel.pk])
        )


class _FormRefused(Exception):
    """A service refused what the admin's form accepted."""


# --- Deliveries ---------------------------------------------------------------------------------


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "channel",
        "alert_link",
        "event_type",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "delivered_at",
    ]
    list_filter = ["status", "event_type", "channel"]
    list_select_related = ["channel"]
    search_fields = ["message_id", "last_error"]
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).defer("payload")

    @admin.display(description="alert", ordering="alert")
    def alert_link(self, delivery: NotificationDelivery) -> SafeString | str:
        if delivery.alert_id is None:
            return "-"
        url = reverse("admin:analytics_alert_change", args=[delivery.alert_id])
        return format_html('<a href="{}">alert {}</a>', url, delivery.alert_id)


# --- The open alerts panel of a device's page ----------------------------------------------------


def device_alerts_context(request: HttpRequest, device: Device) -> dict:
    """The device's open alerts, most severe first, with links to act on them."""
    open_alerts = sorted(
        Alert.objects.filter(device=device, state__in=Alert.OPEN_STATES).select_related(
            "rule", "acknowledged_by"
        ),
        key=lambda alert: (-SEVERITY_RANK[Severity(alert.severity)], _newest_first(alert.fired_at)),
    )
    changelist = reverse("admin:analytics_alert_changelist")
    return {
        "alerts": [
            {
                "alert": alert,
                "badge": severity_badge(alert.severity),
                "url": reverse("admin:analytics_alert_change", args=[alert.pk]),
            }
            for alert in open_alerts
        ],
        "all_url": f"{changelist}?device__id__exact={device.pk}",
    }


def _newest_first(when: datetime) -> float:
    return -when.timestamp()
