"""Creating, changing and deleting alert rules, and deleting the channels rules
notify: the API and the admin call these.

What a valid rule is lives here, in one function over a rule's complete values
(`alert_rule_errors`), so the API's serializer (a PATCH merges its fields into
the rule's first), the admin's form and the services refuse the same things
with the same messages.
"""

import math
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.db import transaction

from analytics.fields import METRIC_NAME_HELP, METRIC_NAME_RE
from analytics.models import Alert, AlertPending, AlertRule, NotificationChannel
from devices.events import Actor, audit_record
from devices.models import Device, Site
from homepot.errors import ConflictError, NotFoundError, ServiceError

Source = AlertRule.Source
Condition = AlertRule.Condition

# for_seconds, cooldown_seconds and repeat_seconds: up to 30 days.
DURATION_MAX_SECONDS = 30 * 86_400
DURATION_FIELDS = ("for_seconds", "cooldown_seconds", "repeat_seconds")
MAX_CHANNELS_PER_RULE = 50
# The side of the threshold a resolve_threshold must be on: gt 80 fires above 80,
# so it resolves below a value no higher than 80 (75: below 75).
RESOLVE_AT_OR_BELOW = frozenset({Condition.GT, Condition.GE})
RESOLVE_AT_OR_ABOVE = frozenset({Condition.LT, Condition.LE})
# Everything an operator sets on a rule, in the order the admin's form shows it.
RULE_FIELDS = [
    "name",
    "source",
    "metric",
    "condition",
    "threshold",
    "for_seconds",
    "severity",
    "site",
    "device_type",
    "device",
    "cooldown_seconds",
    "repeat_seconds",
    "auto_resolve",
    "resolve_threshold",
    "channels",
    "enabled",
]
# A change to one of these restarts any pending "condition holds since": a
# pending period that began under another condition or scope must not count.
CONDITION_FIELDS = frozenset(
    {"source", "metric", "condition", "threshold", "site", "device_type", "device", "enabled"}
)
Errors = dict[str, list[str]]


class AlertRuleInvalid(ServiceError):
    """A rule's values contradict each other; `errors` names each field."""

    code = "invalid_rule"

    def __init__(self, errors: Errors) -> None:
        text = " ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())
        super().__init__(text)
        self.errors = errors


# --- Validation ---------------------------------------------------------------------------


def alert_rule_errors(values: Mapping[str, Any], *, rule: AlertRule | None = None) -> Errors:
    """What is wrong with a rule that would have these values (all of RULE_FIELDS
    but channels); `rule` is the rule being changed, if it exists. Empty: valid."""
    errors: Errors = {}
    if values["source"] == Source.METRIC:
        _metric_errors(values, errors)
    if rule is not None and rule.builtin and values["source"] != rule.source:
        errors["source"] = ["A built-in rule keeps its source."]
    _duration_errors(values, errors)
    _scope_errors(values, errors)
    return errors


def _metric_errors(values: Mapping[str, Any], errors: Errors) -> None:
    metric = values["metric"] or ""
    if not metric:
        errors["metric"] = ["A metric rule needs the metric's name."]
    elif not METRIC_NAME_RE.fullmatch(metric):
        errors["metric"] = [f"Invalid metric name: {METRIC_NAME_HELP}"]
    condition, threshold = values["condition"], values["threshold"]
    if condition == Condition.ABSENT:
        if not values["for_seconds"]:
            errors["for_seconds"] = ["`absent` needs for_seconds > 0: how long without a value."]
        if values["resolve_threshold"] is not None:
            errors["resolve_threshold"] = ["`absent` resolves when a value arrives: none here."]
        return
    if threshold is None:
        errors["threshold"] = [f"`{condition}` needs a threshold."]
    elif (message := _number_error(threshold)) is not None:
        errors["threshold"] = [message]
    else:
        _resolve_threshold_errors(condition, threshold, values["resolve_threshold"], errors)


def _resolve_threshold_errors(
    condition: str, threshold: float, resolve: float | None, errors: Errors
) -> None:
    if resolve is None:
        return
    if (message := _number_error(resolve)) is not None:
        errors["resolve_threshold"] = [message]
    elif condition in RESOLVE_AT_OR_BELOW and resolve > threshold:
        errors["resolve_threshold"] = [
            f"`{condition} {threshold:g}` resolves below this value: at most {threshold:g}."
        ]
    elif condition in RESOLVE_AT_OR_ABOVE and resolve < threshold:
        errors["resolve_threshold"] = [
            f"`{condition} {threshold:g}` resolves above this value: at least {threshold:g}."
        ]
    elif condition not in RESOLVE_AT_OR_BELOW | RESOLVE_AT_OR_ABOVE:
        errors["resolve_threshold"] = ["Hysteresis needs a direction: gt, ge, lt or le."]


def _number_error(value: object) -> str | None:
    # bool is an int in Python, but true is not a threshold.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "Must be a number."
    if not math.isfinite(value):
        return "Must be a finite number."
    bound = settings.TELEMETRY_MAX_ABS_VALUE
    if abs(value) > bound:
        return f"Must be between -{bound:g} and {bound:g}."
    return None


def _duration_errors(values: Mapping[str, Any], errors: Errors) -> None:
    for name in DURATION_FIELDS:
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int):
            errors[name] = ["Must be a whole number of seconds."]
        elif not 0 <= value <= DURATION_MAX_SECONDS:
            errors[name] = [f"Must be between 0 and {DURATION_MAX_SECONDS} seconds (30 days)."]


def _scope_errors(values: Mapping[str, Any], errors: Errors) -> None:
    """A device in the scope must be of the scope's site and type: otherwise the
    rule could never match anything, which is a mistake, not a rule."""
    device: Device | None = values["device"]
    if device is None:
        return
    site: Site | None = values["site"]
    if site is not None and device.site_id != site.pk:
        errors["device"] = [f"{device.public_id} is not at site {site.public_id}."]
    device_type = values["device_type"]
    if device_type and device.device_type != device_type:
        errors.setdefault("device", []).append(
            f"{device.public_id} is a {device.device_type}, not a {device_type}."
        )


def alert_rule_normalise(values: dict[str, Any]) -> dict[str, Any]:
    """Clear what the rule's source or condition ignores, so the rule shows only
    what it does: built-in sources have no metric or threshold; `absent` has no
    threshold."""
    if values["source"] != Source.METRIC:
        return {**values, "metric": "", "threshold": None, "resolve_threshold": None}
    if values["condition"] == Condition.ABSENT:
        return {**values, "threshold": None, "resolve_threshold": None}
    return values


def alert_rule_values(rule: AlertRule) -> dict[str, Any]:
    """A rule's current values (RULE_FIELDS but channels)."""
    return {name: getattr(rule, name) for name in RULE_FIELDS if name != "channels"}


def alert_rule_defaults() -> dict[str, Any]:
    """The values of a new rule where none is given."""
    fields = (AlertRule._meta.get_field(name) for name in RULE_FIELDS if name != "channels")
    return {field.name: field.get_default() for field in fields}


def _validated(values: dict[str, Any], rule: AlertRule | None = None) -> dict[str, Any]:
    errors = alert_rule_errors(values, rule=rule)
    if errors:
        raise AlertRuleInvalid(errors)
    return alert_rule_normalise(values)


# --- Writes -------------------------------------------------------------------------------


def alert_rule_create(
    *, actor: Actor, channels: Iterable[NotificationChannel] = (), **values: Any
) -> AlertRule:
    """A new rule from `values` (RULE_FIELDS; the model's defaults for the rest). Audited."""
    values = _validated({**alert_rule_defaults(), **values})
    channels = list(channels)
    with transaction.atomic():
        rule = AlertRule.objects.create(**values)
        rule.channels.set(channels)
        audit_record(
            actor=actor,
            action="alert_rule.create",
            target=rule,
            data=_audit_values({**values, "channels": channels}),
        )
    return rule


def alert_rule_update(*, actor: Actor, rule: AlertRule, changes: Mapping[str, Any]) -> AlertRule:
    """Apply `changes` (some of RULE_FIELDS) to the rule, valid as a whole.
    Audited with what changed; a change of condition or scope restarts pending
    periods."""
    unknown = set(changes) - set(RULE_FIELDS)
    if unknown:
        raise ValueError(f"Not a rule's field: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        locked = AlertRule.objects.select_for_update().filter(pk=rule.pk).first()
        if locked is None:
            raise NotFoundError(f"Alert rule {rule.pk} not found.")
        current = alert_rule_values(locked)
        values = _validated({**current, **_without_channels(changes)}, rule=locked)
        changed = {name: value for name, value in values.items() if value != current[name]}
        if "channels" in changes:
            _channels_change(locked, list(changes["channels"]), changed)
        for name, value in changed.items():
            if name != "channels":
                setattr(locked, name, value)
        if changed:
            locked.save()
            if CONDITION_FIELDS & set(changed):
                AlertPending.objects.filter(rule=locked).delete()
            audit_record(
                actor=actor,
                action="alert_rule.change",
                target=locked,
                data={"changed": _audit_values(changed)},
            )
    return locked


def _without_channels(changes: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in changes.items() if name != "channels"}


def _channels_change(
    rule: AlertRule, channels: list[NotificationChannel], changed: dict[str, Any]
) -> None:
    current = set(rule.channels.values_list("pk", flat=True))
    if {channel.pk for channel in channels} != current:
        rule.channels.set(channels)
        changed["channels"] = channels


def alert_rule_delete(*, actor: Actor, rule: AlertRule) -> None:
    """Delete a rule with its resolved alerts (their events stay). Audited.

    409 for a built-in rule (disable it instead), and for a rule with open alerts:
    deleting them would leave every receiver of their `alert.fired` waiting for
    an `alert.resolved` that never comes. Disabling the rule resolves them at
    the next evaluation (notified); then it can go."""
    with transaction.atomic():
        # The evaluator holds this lock while it fires: no alert opens meanwhile.
        locked = AlertRule.objects.select_for_update().filter(pk=rule.pk).first()
        if locked is None:
            raise NotFoundError(f"Alert rule {rule.pk} not found.")
        rule_deletable_check(locked)
        audit_record(
            actor=actor, action="alert_rule.delete", target=locked, data={"name": locked.name}
        )
        locked.delete()


def rule_deletable_check(rule: AlertRule) -> None:
    """ConflictError (409) naming why the rule cannot be deleted now, if it cannot."""
    if rule.builtin:
        raise ConflictError(
            f"{rule.name!r} is a built-in rule: disable it instead of deleting it.",
            code="builtin_rule",
        )
    open_alerts = rule.alerts.filter(state__in=Alert.OPEN_STATES).count()
    if open_alerts:
        raise ConflictError(
            f"{rule.name!r} has {open_alerts} open alert(s): disable it first (they resolve "
            "at the next evaluation, and their channels hear of it), then delete it.",
            code="rule_has_open_alerts",
        )


def _audit_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values as the audit trail keeps them (JSON): a site or device by its public
    id, channels by their ids."""
    return {name: _audit_value(value) for name, value in values.items()}


def _audit_value(value: Any) -> Any:
    if isinstance(value, Site | Device):
        return value.public_id
    if isinstance(value, list):
        return sorted(channel.pk for channel in value)
    return value


# --- Channels that rules notify ------------------------------------------------------------


def notification_channel_delete(*, actor: Actor, channel: NotificationChannel) -> None:
    """Delete a channel: the rules that named it stop notifying it, and its delivery
    log goes with it (a queued delivery finds its row gone and stops). Audited."""
    with transaction.atomic():
        rule_ids = sorted(channel.rules.values_list("pk", flat=True))
        audit_record(
            actor=actor,
            action="notification_channel.delete",
            target=channel,
            data={"name": channel.name, "kind": channel.kind, "rules": rule_ids},
        )
        channel.delete()
