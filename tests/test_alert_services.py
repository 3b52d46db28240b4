"""What operators do to alerts and silences (acknowledge, resolve by hand,
silence), the built-in rules' sync, retention, and the beat tasks."""

from datetime import datetime, timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from analytics.alerting.evaluate import alerts_evaluate
from analytics.alerting.services import (
    alert_acknowledge,
    alert_is_silenced,
    alert_resolve,
    alert_rules_builtin_sync,
    alerts_prune,
    notification_deliveries_prune,
    silence_create,
    silence_delete,
    silence_from_alert,
    silences_active,
)
from analytics.models import Alert, AlertRule, NotificationChannel, NotificationDelivery, Silence
from analytics.tasks import evaluate_alerts, prune_alerts
from devices.models import AuditEntry, Device, Event
from homepot.errors import ConflictError, ServiceError
from tests.test_alert_evaluation import deliveries, device_make, rule_make, send

FIRED, RESOLVED = "alert.fired", "alert.resolved"


@pytest.fixture
def t0() -> datetime:
    return timezone.now().replace(microsecond=0) + timedelta(hours=1)


@pytest.fixture
def channel(db) -> NotificationChannel:  # noqa: ANN001
    return NotificationChannel.objects.create(
        name="ops", kind=NotificationChannel.Kind.EMAIL, addresses=["ops@example.com"]
    )


@pytest.fixture
def device(site) -> Device:
    return device_make(site, "pi-1")


@pytest.fixture
def firing(device, t0, channel) -> Alert:
    """A rule with a channel, and its alert firing on pi-1 since t0."""
    rule = rule_make(channel)
    send(device, 85, t0)
    alerts_evaluate(now=t0)
    return Alert.objects.get(rule=rule, device=device)


# --- Acknowledge --------------------------------------------------------------------


def test_acknowledging_records_who_when_and_why(firing, operator, t0):
    at = t0 + timedelta(minutes=5)

    alert = alert_acknowledge(alert=firing, actor=operator, note=" on my way ", now=at)

    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_at, alert.acknowledged_by) == (
        "acknowledged",
        at,
        operator,
    )
    assert alert.ack_note == "on my way"
    event = Event.objects.get(kind="alert.acknowledged")
    assert (event.alert, event.device) == (alert, alert.device)
    assert event.data == {"by": "otto", "note": "on my way"}
    assert event.message == "too hot on pi-1 acknowledged by otto"
    entry = AuditEntry.objects.get(action="alert.acknowledge")
    assert (entry.actor_user, entry.target_id) == (operator, str(alert.pk))
    assert deliveries(alert.rule) == [(FIRED, 0)]  # acknowledging notifies no one


def test_acknowledging_twice_changes_nothing(firing, operator, admin_user, t0):
    alert_acknowledge(alert=firing, actor=operator, now=t0)

    again = alert_acknowledge(alert=firing, actor=admin_user, note="me too", now=t0)

    assert (again.acknowledged_by, again.ack_note) == (operator, "")
    assert Event.objects.filter(kind="alert.acknowledged").count() == 1


def test_a_resolved_alert_cannot_be_acknowledged(firing, operator, t0):
    alert_resolve(alert=firing, actor=operator, now=t0)

    with pytest.raises(ConflictError) as error:
        alert_acknowledge(alert=firing, actor=operator, now=t0)

    assert (error.value.status_code, error.value.code) == (409, "alert_resolved")
    firing.refresh_from_db()
    assert firing.state == "resolved"


# --- Resolve by hand ----------------------------------------------------------------


def test_resolving_by_hand_records_who_and_notifies(firing, operator, t0):
    at = t0 + timedelta(minutes=1)

    alert_resolve(alert=firing, actor=operator, now=at)

    firing.refresh_from_db()
    assert (firing.state, firing.resolved_at, firing.resolved_by) == ("resolved", at, operator)
    event = Event.objects.get(kind="alert.resolved")
    assert (event.alert, event.data["by"], event.data["notified"]) == (firing, "otto", True)
    assert AuditEntry.objects.filter(action="alert.resolve", actor_user=operator).count() == 1
    assert deliveries(firing.rule) == [(FIRED, 0), (RESOLVED, 0)]
    with pytest.raises(ConflictError):
        alert_resolve(alert=firing, actor=operator, now=at)
    assert deliveries(firing.rule) == [(FIRED, 0), (RESOLVED, 0)]


def test_an_acknowledged_alert_can_be_resolved_by_hand(firing, operator, t0):
    alert_acknowledge(alert=firing, actor=operator, now=t0)

    assert alert_resolve(alert=firing, actor=operator, now=t0).state == "resolved"


def test_a_resolve_by_hand_under_a_silence_notifies_no_one(firing, operator, t0):
    silence_from_alert(alert=firing, actor=operator, hours=1, reason="known", now=t0)

    alert_resolve(alert=firing, actor=operator, now=t0 + timedelta(minutes=1))

    assert deliveries(firing.rule) == [(FIRED, 0)]
    assert Event.objects.get(kind="alert.resolved").data["notified"] is False
    assert Event.objects.get(kind="alert.silenced").data["transition"] == "alert.resolved"


def test_resolved_by_hand_while_the_condition_holds_it_fires_again_only_after_cooldown(
    device, t0, channel, operator
):
    rule = rule_make(channel, for_seconds=30, cooldown_seconds=300)
    send(device, 90, t0 - timedelta(seconds=30))
    alerts_evaluate(now=t0 - timedelta(seconds=30))
    alerts_evaluate(now=t0)
    first = Alert.objects.get(rule=rule)
    alert_resolve(alert=first, actor=operator, now=t0 + timedelta(seconds=10))

    for seconds in (15, 60, 309):  # still 90, held since t0 + 15, but cooling down
        assert alerts_evaluate(now=t0 + timedelta(seconds=seconds)).fired == 0

    assert alerts_evaluate(now=t0 + timedelta(seconds=310)).fired == 1
    assert Alert.objects.filter(rule=rule, state="firing").exclude(pk=first.pk).count() == 1


# --- Silences -----------------------------------------------------------------------


def test_a_silence_is_created_with_its_scope_window_reason_and_author(device, operator, t0):
    silence = silence_create(
        actor=operator, device=device, starts_at=t0, ends_at=t0 + timedelta(hours=2),
        reason="  moving the rack ", now=t0,
    )  # fmt: skip

    assert (silence.device, silence.site, silence.rule) == (device, None, None)
    assert (silence.reason, silence.created_by) == ("moving the rack", operator)
    entry = AuditEntry.objects.get(action="silence.create")
    assert (entry.target_type, entry.target_id) == ("silence", str(silence.pk))
    assert entry.data["reason"] == "moving the rack"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"ends_at": 0}, "invalid_silence_window"),
        ({"ends_at": -60}, "invalid_silence_window"),
        ({"ends_at": 366 * 86400}, "silence_too_long"),
        ({"starts_at": -7200, "ends_at": -3600}, "silence_in_past"),
        ({"device": None}, "silence_scope_required"),
        ({"fleet_wide": True}, "silence_scope_conflict"),
        ({"reason": "   "}, "reason_required"),
        ({"reason": "x" * 501}, "reason_too_long"),
        ({"other_site": True}, "device_not_in_site"),
    ],
)
def test_a_silence_that_makes_no_sense_is_refused(device, other_site, operator, t0, change, code):
    fields = {
        "actor": operator,
        "device": device,
        "starts_at": t0,
        "ends_at": t0 + timedelta(hours=1),
        "reason": "work",
        "now": t0,
    }
    for name in ("starts_at", "ends_at"):
        if name in change:
            fields[name] = t0 + timedelta(seconds=change.pop(name))
    if change.pop("other_site", False):
        fields["site"] = other_site
    fields |= change

    with pytest.raises(ServiceError) as error:
        silence_create(**fields)

    assert (error.value.status_code, error.value.code) == (400, code)
    assert not Silence.objects.exists()


def test_a_year_long_silence_is_allowed(device, operator, t0):
    silence = silence_create(
        actor=operator, device=device, starts_at=t0, ends_at=t0 + timedelta(days=365),
        reason="retired for a year", now=t0,
    )  # fmt: skip

    assert silence.ends_at - silence.starts_at == timedelta(days=365)


def test_a_fleet_wide_silence_must_be_asked_for_and_covers_every_alert(firing, operator, t0):
    silence_create(
        actor=operator, fleet_wide=True, starts_at=t0, ends_at=t0 + timedelta(hours=1),
        reason="upgrade night", now=t0,
    )  # fmt: skip

    assert alert_is_silenced(firing, t0)
    assert not alert_is_silenced(firing, t0 + timedelta(hours=1))


@pytest.mark.parametrize(
    ("scope", "covers"),
    [
        ("site", True),
        ("other_site", False),
        ("device", True),
        ("rule", True),
        ("other_rule", False),
        ("site+rule", True),
        ("device+other_rule", False),
    ],
)
def test_a_silence_covers_an_alert_when_each_of_its_fields_matches(
    firing, other_site, operator, t0, scope, covers
):
    other_rule = rule_make(name="other")
    things = {
        "site": ("site", firing.device.site),
        "other_site": ("site", other_site),
        "device": ("device", firing.device),
        "rule": ("rule", firing.rule),
        "other_rule": ("rule", other_rule),
    }
    fields = dict(things[part] for part in scope.split("+"))
    silence_create(
        actor=operator, starts_at=t0, ends_at=t0 + timedelta(hours=1), reason="x", now=t0,
        **fields,
    )  # fmt: skip

    assert alert_is_silenced(firing, t0 + timedelta(minutes=1)) is covers


def test_silences_are_active_from_their_start_until_just_before_their_end(device, operator, t0):
    silence = silence_create(
        actor=operator, device=device, starts_at=t0 + timedelta(hours=1),
        ends_at=t0 + timedelta(hours=2), reason="planned", now=t0,
    )  # fmt: skip

    active = [silence in silences_active(t0 + timedelta(minutes=m)) for m in (59, 60, 119, 120)]
    assert active == [False, True, True, False]


def test_silencing_from_an_alert_covers_its_device_and_rule_for_hours(firing, operator, t0):
    silence = silence_from_alert(alert=firing, actor=operator, hours=4, now=t0)

    assert (silence.device, silence.rule, silence.site) == (firing.device, firing.rule, None)
    assert (silence.starts_at, silence.ends_at) == (t0, t0 + timedelta(hours=4))
    assert silence.reason == f"silenced from alert {firing.pk}"
    assert alert_is_silenced(firing, t0)
    for hours in (0, -1, 24 * 365 + 1):
        with pytest.raises(ServiceError) as error:
            silence_from_alert(alert=firing, actor=operator, hours=hours, now=t0)
        assert error.value.code == "invalid_silence_hours"


def test_deleting_a_silence_lets_the_alert_it_held_back_notify(device, t0, channel, operator):
    rule = rule_make(channel)
    silence = silence_create(
        actor=operator, device=device, starts_at=t0, ends_at=t0 + timedelta(hours=8),
        reason="soldering", now=t0,
    )  # fmt: skip
    send(device, 85, t0)
    alerts_evaluate(now=t0)
    assert deliveries(rule) == []

    silence_delete(silence=silence, actor=operator)

    assert not Silence.objects.exists()
    entry = AuditEntry.objects.get(action="silence.delete")
    assert (entry.target_id, entry.data["reason"]) == (str(silence.pk), "soldering")
    assert alerts_evaluate(now=t0 + timedelta(seconds=15)).notified_late == 1
    assert deliveries(rule) == [(FIRED, 0)]


# --- Built-in rules -----------------------------------------------------------------


def test_the_built_in_rules_sync_keeps_edits_and_brings_back_a_deleted_one(db):  # noqa: ANN001
    AlertRule.objects.filter(builtin="device_offline").update(severity="info", enabled=False)
    AlertRule.objects.filter(builtin="ssh_failing").delete()

    alert_rules_builtin_sync(apps=apps, using="default")

    rules = {r.builtin: r for r in AlertRule.objects.filter(builtin__isnull=False)}
    assert set(rules) == {"device_offline", "ssh_failing", "ssh_host_key_mismatch"}
    assert (rules["device_offline"].severity, rules["device_offline"].enabled) == ("info", False)
    assert (rules["ssh_failing"].severity, rules["ssh_failing"].for_seconds) == ("warning", 120)
    assert AlertRule.objects.filter(builtin__isnull=False).count() == 3


# --- Retention and tasks ------------------------------------------------------------


def test_prune_deletes_alerts_resolved_before_the_retention_and_old_deliveries(
    device, t0, channel, settings
):
    settings.ALERT_RETENTION_DAYS, settings.NOTIFICATION_RETENTION_DAYS = 30, 7
    rule = rule_make(channel)
    old, recent = t0 - timedelta(days=31), t0 - timedelta(days=29)
    old_resolved = Alert.objects.create(
        rule=rule, device=device, state="resolved", severity="warning", fired_at=old,
        resolved_at=old,
    )  # fmt: skip
    kept = Alert.objects.create(
        rule=rule, device=device, state="resolved", severity="warning", fired_at=old,
        resolved_at=recent,
    )  # fmt: skip
    still_open = Alert.objects.create(rule=rule, device=device, severity="warning", fired_at=old)
    for alert, age in ((old_resolved, 31), (kept, 8), (still_open, 1)):
        delivery = NotificationDelivery.objects.create(
            channel=channel, alert=alert, event_type=FIRED, message_id=f"msg_{alert.pk}",
            payload={},
        )  # fmt: skip
        NotificationDelivery.objects.filter(pk=delivery.pk).update(
            created_at=t0 - timedelta(days=age)
        )

    assert alerts_prune(now=t0) == 1
    assert notification_deliveries_prune(now=t0) == 1  # kept's, 8 days old

    assert set(Alert.objects.values_list("pk", flat=True)) == {kept.pk, still_open.pk}
    assert list(NotificationDelivery.objects.values_list("alert", flat=True)) == [still_open.pk]


def test_the_beat_tasks_run_a_round_and_a_prune(site):
    Device.objects.filter(pk=device_make(site, "pi-1").pk).update(status="offline")

    report = evaluate_alerts.apply().get()
    pruned = prune_alerts.apply().get()

    assert (report["fired"], report["rules"]) == (1, 3)
    assert Alert.objects.get().rule.builtin == "device_offline"
    assert pruned == {"alerts": 0, "deliveries": 0}
