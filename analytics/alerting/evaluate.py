"""One evaluation round: every rule against the latest state of the fleet, set-based.

Each rule is evaluated in its own transaction with its row locked
(select_for_update, skip_locked): a second evaluator running at the same time
(two workers, a slow round overlapping the next) skips the rule rather than
doing its work twice, so one rule and device never get two open alerts nor two
notifications of one transition. The partial unique constraint on open alerts
is the backstop.

Per rule, the number of queries does not depend on the number of devices: the
devices for which the condition holds (with their values), the rule's open
alerts (with their devices' current values), its pending rows, the resolves
still within the cooldown, then one statement per kind of write. Only
notifications cost per alert: `notifications_enqueue` takes one alert, and is
not called at all for a rule without an enabled channel.

Semantics:
- for_seconds: the condition must hold at every evaluation from the first one
  that saw it (AlertPending.since) until for_seconds later; a miss in between
  starts over. For `absent` the window is for_seconds itself (no value newer
  than now - for_seconds, or never one and the device exists that long).
- cooldown_seconds: no new alert for a rule and device within this long after
  its last alert there resolved (by itself or by hand); the pending row stays,
  so the alert fires when the cooldown ends if the condition still holds.
- Hysteresis (resolve_threshold) applies to gt/ge (resolves once the value is
  below it) and lt/le (once above it). eq and ne, `absent` and the built-in
  sources resolve as soon as the condition stops holding: a threshold between
  "equal" and "not equal" means nothing.
- An alert resolves, whatever auto_resolve says, when its device is
  decommissioned or its rule is disabled.
- Silences: the transition happens and its event says it was silenced, but no
  one is notified. A firing alert that opened under a silence is notified as
  `alert.fired` at the first evaluation after the silence ends; reminders due
  during a silence are sent at the first evaluation after it (counting again
  from then).
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError, connection, transaction
from django.db.models import Exists, F, FloatField, OuterRef, Q, Subquery, Value

from analytics.alerting.services import (
    alert_notify,
    silenced_event_build,
    silences_active,
    silences_covering,
)
from analytics.models import (
    Alert,
    AlertPending,
    AlertRule,
    LatestValue,
    MetricName,
    NotificationDelivery,
    Silence,
)
from devices.events import event_build, events_record
from devices.models import Device, Event, SshTarget, TransactionId

logger = logging.getLogger(__name__)

Source = AlertRule.Source
Condition = AlertRule.Condition
EventType = NotificationDelivery.EventType

# The ORM lookup of each comparison (ne is an exclude of exact).
LOOKUPS = {"gt": "gt", "ge": "gte", "lt": "lt", "le": "lte", "eq": "exact", "ne": "exact"}
SSH_FAILING_STATUSES = [SshTarget.LastStatus.FAILED, SshTarget.LastStatus.CIRCUIT_OPEN]


@dataclass
class EvaluationReport:
    rules: int = 0  # evaluated
    skipped: int = 0  # locked by another evaluator at the time
    failed: int = 0  # a database error rolled the rule's round back (logged)
    pending: int = 0  # conditions that started holding (waiting for for_seconds)
    fired: int = 0
    resolved: int = 0
    reminders: int = 0
    notified_late: int = 0  # fired under a silence, notified once it ended


@dataclass(frozen=True)
class Observation:
    """A device for which a rule's condition holds now."""

    device_pk: int
    public_id: str
    site_pk: int
    value: float | None = None
    detail: str = ""  # what else the message should say (an SSH error)


@dataclass(frozen=True)
class OpenAlert:
    """What a round reads of an open alert: a row, not a model instance (a rule may
    have thousands); those that change state are loaded as instances when locked."""

    pk: int
    device_pk: int
    state: str
    last_value: float | None
    last_notified_at: datetime | None
    site_pk: int
    public_id: str
    gone: bool  # the device was decommissioned
    current: float | None  # the device's latest value of the rule's metric


@dataclass
class RuleRound:
    """What one rule's evaluation does; applied in its transaction."""

    rule: AlertRule
    now: datetime
    silences: list[Silence]
    events: list[Event] = field(default_factory=list)
    notify: list[tuple[Alert, str, int]] = field(default_factory=list)
    notifies: bool | None = None  # whether the rule has an enabled channel


# --- The round ----------------------------------------------------------------------


def alerts_evaluate(*, now: datetime) -> EvaluationReport:
    """Evaluate every enabled rule (and close the alerts of disabled ones)."""
    report = EvaluationReport()
    silences = list(silences_active(now))
    metric_pks = _metric_pks()
    for rule_pk in _rules_to_evaluate():
        try:
            with transaction.atomic():
                rule = AlertRule.objects.select_for_update(skip_locked=True).filter(pk=rule_pk)
                rule = rule.first()
                if rule is None:  # another evaluator has it (or it was deleted)
                    report.skipped += 1
                    continue
                rule_round = RuleRound(rule=rule, now=now, silences=silences)
                _rule_evaluate(rule_round, metric_pks.get(rule.metric), report)
        except DatabaseError:
            logger.exception("alert rule %s: evaluation failed, rolled back", rule_pk)
            report.failed += 1
    return report


def _rules_to_evaluate() -> list[int]:
    open_alerts = Alert.objects.filter(rule=OuterRef("pk"), state__in=Alert.OPEN_STATES)
    pending = AlertPending.objects.filter(rule=OuterRef("pk"))
    return list(
        AlertRule.objects.filter(Q(enabled=True) | Exists(open_alerts) | Exists(pending))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _metric_pks() -> dict[str, int]:
    """The metric ids of every rule's metric (one query for the round)."""
    names = AlertRule.objects.filter(source=Source.METRIC).exclude(metric="").values("metric")
    return dict(MetricName.objects.filter(name__in=names).values_list("name", "pk"))


def _rule_evaluate(rr: RuleRound, metric_pk: int | None, report: EvaluationReport) -> None:
    rule = rr.rule
    open_alerts = _open_alerts(rule, metric_pk)
    if not rule.enabled:
        report.resolved += _resolve(rr, open_alerts, reason="rule disabled")
        AlertPending.objects.filter(rule=rule).delete()
    else:
        report.rules += 1
        holding = {o.device_pk: o for o in _holding(rule, metric_pk, rr.now)}
        _open_alerts_follow(rr, open_alerts, holding, metric_pk, report)
        open_devices = {a.device_pk for a in open_alerts}
        waiting = {pk: o for pk, o in holding.items() if pk not in open_devices}
        _waiting_fire(rr, waiting, report)
    _finish(rr)


def _open_alerts_follow(
    rr: RuleRound,
    open_alerts: list[OpenAlert],
    holding: dict[int, Observation],
    metric_pk: int | None,
    report: EvaluationReport,
) -> None:
    """Open alerts: their last values, resolves, reminders, late notifications."""
    gone = [a for a in open_alerts if a.gone]
    cleared = [
        a
        for a in open_alerts
        if rr.rule.auto_resolve
        and not a.gone
        and a.device_pk not in holding
        and _past_resolve_threshold(rr.rule, a.current)
    ]
    _last_values_update(metric_pk, open_alerts)
    report.resolved += _resolve(rr, gone, reason="device decommissioned")
    report.resolved += _resolve(rr, cleared, reason="condition cleared")
    closing = {a.pk for a in gone} | {a.pk for a in cleared}
    still_open = [a for a in open_alerts if a.pk not in closing]
    report.reminders += _remind(rr, still_open)
    report.notified_late += _notify_late(rr, still_open)


def _waiting_fire(rr: RuleRound, waiting: dict[int, Observation], report: EvaluationReport) -> None:
    """Devices where the condition holds and no alert is open: pending until
    for_seconds have passed, then fired unless within the cooldown."""
    rule, now = rr.rule, rr.now
    pending = dict(AlertPending.objects.filter(rule=rule).values_list("device_id", "since"))
    due = [o for pk, o in waiting.items() if _held_long_enough(rule, pending.get(pk), now)]
    cooling = _cooling_devices(rule, now) if due and rule.cooldown_seconds else set()
    to_fire = [o for o in due if o.device_pk not in cooling]
    report.pending += _pending_update(rule, now, waiting, pending, to_fire)
    report.fired += _fire(rr, to_fire)


def _finish(rr: RuleRound) -> None:
    """Write the round's events, then queue its notifications (the rule must have
    an enabled channel for there to be any)."""
    _transaction_id_set(rr.events)
    events_record(rr.events)
    if not rr.notify or not _notifies(rr):
        return
    # The payloads name each device and its site: one query for all of them.
    device_pks = {alert.device_id for alert, _, _ in rr.notify}
    devices = Device.objects.select_related("site").in_bulk(device_pks)
    for alert, event_type, sequence in rr.notify:
        alert.device = devices[alert.device_id]
        alert_notify(alert, event_type=event_type, sequence=sequence, now=rr.now)


def _transaction_id_set(events: list[Event]) -> None:
    """Give the events the id of this transaction (what Event.txid defaults to),
    read once: a batch whose rows all hold plain values is inserted through
    UNNEST on PostgreSQL, where one with a database default in every row is a
    VALUES list the ORM compiles and the server plans row by row (three times
    slower for a storm of alerts). Only inside the transaction that inserts them:
    in autocommit the SELECT would be a transaction of its own."""
    if len(events) < 2 or connection.vendor != "postgresql" or not connection.in_atomic_block:
        return  # the database default does it
    sql, params = TransactionId().as_postgresql(None, connection)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", params)
        (txid,) = cursor.fetchone()
    for event in events:
        event.txid = txid


# --- Where the condition holds ------------------------------------------------------


def _device_scope(rule: AlertRule, prefix: str = "") -> Q:
    """Devices the rule looks at: active ones, narrowed by its site, type and device."""
    scope = Q(**{f"{prefix}decommissioned_at__isnull": True})
    if rule.site_id:
        scope &= Q(**{f"{prefix}site_id": rule.site_id})
    if rule.device_type:
        scope &= Q(**{f"{prefix}device_type": rule.device_type})
    if rule.device_id:
        scope &= Q(**{f"{prefix}pk": rule.device_id})
    return scope


def _holding(rule: AlertRule, metric_pk: int | None, now: datetime) -> list[Observation]:
    if rule.source == Source.METRIC:
        if not rule.metric:
            return []  # a metric rule without a metric watches nothing
        if rule.condition == Condition.ABSENT:
            return _absent(rule, metric_pk, now)
        return _comparison(rule, metric_pk)
    devices = Device.objects.filter(_device_scope(rule))
    if rule.source == Source.DEVICE_OFFLINE:
        devices = devices.filter(status=Device.Status.OFFLINE)
    elif rule.source == Source.SSH_FAILING:
        devices = devices.filter(
            ssh_target__enabled=True, ssh_target__last_status__in=SSH_FAILING_STATUSES
        )
    elif rule.source == Source.SSH_HOST_KEY_MISMATCH:
        devices = devices.filter(
            ssh_target__enabled=True,
            ssh_target__last_status=SshTarget.LastStatus.HOST_KEY_MISMATCH,
        )
    else:
        return []
    if rule.source in (Source.SSH_FAILING, Source.SSH_HOST_KEY_MISMATCH):
        rows = devices.values_list("pk", "public_id", "site_id", "ssh_target__last_error")
        return [Observation(pk, pid, site, None, error or "") for pk, pid, site, error in rows]
    rows = devices.values_list("pk", "public_id", "site_id")
    return [Observation(pk, pid, site) for pk, pid, site in rows]


def _comparison(rule: AlertRule, metric_pk: int | None) -> list[Observation]:
    if metric_pk is None or rule.threshold is None:
        return []  # no device ever sent the metric (or a rule without a threshold)
    latest = LatestValue.objects.filter(_device_scope(rule, "device__"), metric_id=metric_pk)
    crossing = Q(**{f"value__{LOOKUPS[rule.condition]}": rule.threshold})
    latest = latest.exclude(crossing) if rule.condition == Condition.NE else latest.filter(crossing)
    rows = latest.values_list("device_id", "device__public_id", "device__site_id", "value")
    return [Observation(pk, pid, site, value) for pk, pid, site, value in rows]


def _absent(rule: AlertRule, metric_pk: int | None, now: datetime) -> list[Observation]:
    """Devices without a value newer than now - for_seconds. A device younger than
    that has not been without one for for_seconds yet."""
    window_start = now - timedelta(seconds=rule.for_seconds)
    devices = Device.objects.filter(_device_scope(rule), created_at__lte=window_start)
    if metric_pk is not None:
        fresh = LatestValue.objects.filter(
            device_id=OuterRef("pk"), metric_id=metric_pk, ts__gt=window_start
        )
        devices = devices.exclude(Exists(fresh))
    rows = devices.values_list("pk", "public_id", "site_id")
    return [Observation(pk, pid, site) for pk, pid, site in rows]


def _open_alerts(rule: AlertRule, metric_pk: int | None) -> list[OpenAlert]:
    alerts = Alert.objects.filter(rule=rule, state__in=Alert.OPEN_STATES)
    current = Value(None, output_field=FloatField())
    if metric_pk is not None:
        value = LatestValue.objects.filter(device_id=OuterRef("device_id"), metric_id=metric_pk)
        current = Subquery(value.values("value")[:1])
    rows = alerts.annotate(current=current).values_list(
        "pk", "device_id", "state", "last_value", "last_notified_at", "device__site_id",
        "device__public_id", "device__decommissioned_at", "current",
    )  # fmt: skip
    return [
        OpenAlert(pk, device, state, last, notified, site, public_id, gone is not None, value)
        for pk, device, state, last, notified, site, public_id, gone, value in rows.order_by("pk")
    ]


# --- Transitions --------------------------------------------------------------------


def _locked(rr: RuleRound, rows: list[OpenAlert], **still: object) -> list[Alert]:
    """Lock the alerts of `rows` and load those still in the given state (an
    operator may have acknowledged or resolved one since the round read it)."""
    if not rows:
        return []
    by_pk = {row.pk: row for row in rows}
    alerts = Alert.objects.select_for_update(of=("self",)).filter(pk__in=by_pk, **still)
    locked = list(alerts.order_by("pk"))
    for alert in locked:
        row = by_pk[alert.pk]
        alert.rule = rr.rule  # saves a query per alert where notifications read it
        alert.device_site, alert.device_public_id = row.site_pk, row.public_id
    return locked


def _silenced_by(rr: RuleRound, device_pk: int, site_pk: int) -> list[int]:
    return silences_covering(rr.silences, rule_pk=rr.rule.pk, device_pk=device_pk, site_pk=site_pk)


def _transition_event(
    rr: RuleRound, alert: Alert, kind: str, message: str, silenced_by: list[int], **data: object
) -> None:
    """The transition's event, and an `alert.silenced` one if silences kept it quiet."""
    data["notified"] = not silenced_by
    rr.events.append(
        event_build(kind=kind, device=alert.device_id, alert=alert, message=message, data=data)
    )
    if silenced_by:
        rr.events.append(
            silenced_event_build(
                alert,
                transition=kind,
                device_public_id=alert.device_public_id,
                silenced_by=silenced_by,
            )
        )


def _fire(rr: RuleRound, observations: list[Observation]) -> int:
    """Open an alert for each observation: one INSERT, then its events built from
    plain values. Alert instances only where something needs one: a silenced
    transition's event, and the notifications of a rule with an enabled channel."""
    if not observations:
        return 0
    rule, now = rr.rule, rr.now
    fired = [
        (o, _message(rule, o)[:500], _silenced_by(rr, o.device_pk, o.site_pk)) for o in observations
    ]
    pks = _alerts_insert(rule, now, fired)
    notifies = _notifies(rr)
    for o, message, silenced_by in fired:
        pk = pks[o.device_pk]
        if not silenced_by and not notifies:
            data = {"severity": rule.severity, "value": o.value, "notified": True}
            rr.events.append(
                event_build(
                    kind="alert.fired", device=o.device_pk, alert=pk, message=message, data=data
                )
            )
            continue
        alert = _fired_alert(rule, now, o, message, silenced_by, pk)
        _transition_event(
            rr, alert, "alert.fired", alert.message, silenced_by,
            severity=alert.severity, value=alert.value,
        )  # fmt: skip
        if not silenced_by:
            rr.notify.append((alert, EventType.FIRED, 0))
    return len(fired)


def _fired_alert(
    rule: AlertRule,
    now: datetime,
    o: Observation,
    message: str,
    silenced_by: list[int],
    pk: int | None = None,
) -> Alert:
    """The alert an observation opens (saved already if `pk` is given)."""
    alert = Alert(
        pk=pk,
        rule=rule,
        device_id=o.device_pk,
        state=Alert.State.FIRING,
        severity=rule.severity,
        value=o.value,
        last_value=o.value,
        message=message,
        fired_at=now,
        last_notified_at=None if silenced_by else now,
    )
    if pk is not None:
        alert._state.adding, alert._state.db = False, Alert.objects.db
    alert.device_site, alert.device_public_id = o.site_pk, o.public_id
    alert.silenced_by = silenced_by
    return alert


def _alerts_insert(
    rule: AlertRule, now: datetime, fired: list[tuple[Observation, str, list[int]]]
) -> dict[int, int]:
    """Insert the firing alerts; their primary keys by device. On PostgreSQL one
    INSERT ... SELECT FROM UNNEST of the columns that differ between them (every
    other column gets the model's default), without a model instance each."""
    if connection.vendor != "postgresql":
        alerts = [_fired_alert(rule, now, o, m, s) for o, m, s in fired]
        Alert.objects.bulk_create(alerts)
        return {alert.device_id: alert.pk for alert in alerts}
    per_row = {
        "device_id": [o.device_pk for o, _, _ in fired],
        "value": [o.value for o, _, _ in fired],
        "last_value": [o.value for o, _, _ in fired],
        "message": [m for _, m, _ in fired],
        "last_notified_at": [None if s else now for _, _, s in fired],
    }
    same = {
        "rule_id": rule.pk,
        "state": Alert.State.FIRING,
        "severity": rule.severity,
        "fired_at": now,
    }
    columns, selected, params, arrays, array_params = [], [], [], [], []
    for f in Alert._meta.concrete_fields:
        if f.primary_key:
            continue
        columns.append(connection.ops.quote_name(f.column))
        if f.attname in per_row:
            selected.append(f"u.{f.attname}")
            arrays.append(f"%s::{f.db_type(connection).split('(')[0]}[]")
            array_params.append(
                [f.get_db_prep_save(v, connection=connection) for v in per_row[f.attname]]
            )
        else:
            value = same[f.attname] if f.attname in same else f.get_default()
            selected.append("%s")
            params.append(f.get_db_prep_save(value, connection=connection))
    names = ", ".join(f.attname for f in Alert._meta.concrete_fields if f.attname in per_row)
    sql = (
        f"INSERT INTO {connection.ops.quote_name(Alert._meta.db_table)} ({', '.join(columns)})"
        f" SELECT {', '.join(selected)} FROM UNNEST({', '.join(arrays)}) AS u({names})"
        " RETURNING id, device_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params + array_params)
        return dict((device, pk) for pk, device in cursor.fetchall())


def _notifies(rr: RuleRound) -> bool:
    """Whether the rule has an enabled channel (read once a round)."""
    if rr.notifies is None:
        rr.notifies = rr.rule.channels.filter(enabled=True).exists()
    return rr.notifies


def _resolve(rr: RuleRound, rows: list[OpenAlert], *, reason: str) -> int:
    alerts = _locked(rr, rows, state__in=Alert.OPEN_STATES)
    if not alerts:
        return 0
    Alert.objects.filter(pk__in=[a.pk for a in alerts]).update(
        state=Alert.State.RESOLVED, resolved_at=rr.now
    )
    for alert in alerts:
        alert.state, alert.resolved_at = Alert.State.RESOLVED, rr.now
        silenced_by = _silenced_by(rr, alert.device_id, alert.device_site)
        message = f"{rr.rule.name} on {alert.device_public_id} resolved ({reason})"
        _transition_event(rr, alert, "alert.resolved", message, silenced_by, reason=reason)
        if not silenced_by:
            rr.notify.append((alert, EventType.RESOLVED, 0))
    return len(alerts)


def _remind(rr: RuleRound, rows: list[OpenAlert]) -> int:
    """Reminders of firing (not acknowledged) alerts repeat_seconds after their last
    notification; held back, not counted, while silenced."""
    rule = rr.rule
    if not rule.repeat_seconds:
        return 0
    last_due = rr.now - timedelta(seconds=rule.repeat_seconds)
    due = [
        row
        for row in rows
        if row.state == Alert.State.FIRING
        and row.last_notified_at is not None
        and row.last_notified_at <= last_due
        and not _silenced_by(rr, row.device_pk, row.site_pk)
    ]
    alerts = _locked(rr, due, state=Alert.State.FIRING)
    if not alerts:
        return 0
    Alert.objects.filter(pk__in=[a.pk for a in alerts]).update(
        last_notified_at=rr.now, reminders_sent=F("reminders_sent") + 1
    )
    for alert in alerts:
        alert.last_notified_at, alert.reminders_sent = rr.now, alert.reminders_sent + 1
        n = alert.reminders_sent
        message = f"reminder {n}: {alert.message}"
        _transition_event(rr, alert, "alert.reminder", message, [], reminder=n)
        rr.notify.append((alert, EventType.REMINDER, n))
    return len(alerts)


def _notify_late(rr: RuleRound, rows: list[OpenAlert]) -> int:
    """`alert.fired` for firing alerts that opened under a silence now over."""
    late = [
        row
        for row in rows
        if row.state == Alert.State.FIRING
        and row.last_notified_at is None
        and not _silenced_by(rr, row.device_pk, row.site_pk)
    ]
    alerts = _locked(rr, late, state=Alert.State.FIRING, last_notified_at__isnull=True)
    if not alerts:
        return 0
    Alert.objects.filter(pk__in=[a.pk for a in alerts]).update(last_notified_at=rr.now)
    for alert in alerts:
        alert.last_notified_at = rr.now
        rr.notify.append((alert, EventType.FIRED, 0))
    return len(alerts)


def _last_values_update(metric_pk: int | None, rows: list[OpenAlert]) -> None:
    """Bring last_value of open alerts up to date: one UPDATE from the latest values,
    of only the rows whose value changed since the last round."""
    changed = [row.pk for row in rows if row.current is not None and row.current != row.last_value]
    if metric_pk is None or not changed:
        return
    value = LatestValue.objects.filter(device_id=OuterRef("device_id"), metric_id=metric_pk)
    Alert.objects.filter(pk__in=changed).update(last_value=Subquery(value.values("value")[:1]))


def _pending_update(
    rule: AlertRule,
    now: datetime,
    waiting: dict[int, Observation],
    pending: dict[int, datetime],
    firing: list[Observation],
) -> int:
    """Pending rows: one from now for each device newly holding the condition, none
    for devices where it stopped holding or whose alert fires now."""
    fired = {o.device_pk for o in firing}
    stale = [pk for pk in pending if pk not in waiting or pk in fired]
    if stale:
        AlertPending.objects.filter(rule=rule, device_id__in=stale).delete()
    if not _waits(rule):
        return 0
    new = [
        AlertPending(rule=rule, device_id=pk, since=now, value=o.value)
        for pk, o in waiting.items()
        if pk not in pending and pk not in fired
    ]
    AlertPending.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


# --- Rule semantics -----------------------------------------------------------------


def _waits(rule: AlertRule) -> bool:
    """Whether the condition must hold for_seconds before firing (absent carries
    its window in the condition itself)."""
    return rule.for_seconds > 0 and rule.condition != Condition.ABSENT


def _held_long_enough(rule: AlertRule, since: datetime | None, now: datetime) -> bool:
    if not _waits(rule):
        return True
    return since is not None and now - since >= timedelta(seconds=rule.for_seconds)


def _cooling_devices(rule: AlertRule, now: datetime) -> set[int]:
    """Devices whose last alert of the rule resolved within its cooldown."""
    recent = Alert.objects.filter(
        rule=rule,
        state=Alert.State.RESOLVED,
        resolved_at__gt=now - timedelta(seconds=rule.cooldown_seconds),
    )
    return set(recent.values_list("device_id", flat=True))


def _past_resolve_threshold(rule: AlertRule, current: float | None) -> bool:
    """Whether an alert whose condition stopped holding may resolve (hysteresis)."""
    threshold = rule.resolve_threshold
    if threshold is None or current is None or rule.source != Source.METRIC:
        return True
    if rule.condition in (Condition.GT, Condition.GE):
        return current < threshold
    if rule.condition in (Condition.LT, Condition.LE):
        return current > threshold
    return True  # eq, ne, absent: no hysteresis


def _message(rule: AlertRule, o: Observation) -> str:
    device = o.public_id
    if rule.source == Source.METRIC:
        if rule.condition == Condition.ABSENT:
            return f"no {rule.metric} from {device} for {rule.for_seconds} s"
        symbol = Condition(rule.condition).label
        return f"{rule.metric} of {device} is {o.value:g} ({symbol} {rule.threshold:g})"
    if rule.source == Source.DEVICE_OFFLINE:
        return f"{device} is offline"
    if rule.source == Source.SSH_FAILING:
        return f"SSH checks of {device} failing" + (f": {o.detail}" if o.detail else "")
    return f"SSH host key of {device} does not match the pinned key"
