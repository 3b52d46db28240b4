"""Alert rules evaluated against the fleet's latest state, with a controlled clock:
conditions, for_seconds, hysteresis, cooldown, reminders, scope, silences,
`absent`, the built-in sources, and what a round costs in queries."""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TypeVar

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics.alerting.evaluate import EvaluationReport, alerts_evaluate
from analytics.models import (
    Alert,
    AlertPending,
    AlertRule,
    NotificationChannel,
    NotificationDelivery,
    Silence,
)
from analytics.services import check_metrics_store
from devices.models import Device, Event, Site, SshTarget
from devices.services import device_decommission, devices_mark_offline

FIRED, REMINDER, RESOLVED = "alert.fired", "alert.reminder", "alert.resolved"
T = TypeVar("T")


@pytest.fixture
def t0() -> datetime:
    """The controlled clock's start: after every device of the test was created."""
    return timezone.now().replace(microsecond=0) + timedelta(hours=1)


@pytest.fixture
def channel(db) -> NotificationChannel:  # noqa: ANN001
    return NotificationChannel.objects.create(
        name="ops", kind=NotificationChannel.Kind.EMAIL, addresses=["ops@example.com"]
    )


def rule_make(channel: NotificationChannel | None = None, **fields: object) -> AlertRule:
    fields = {"name": "too hot", "metric": "temp", "condition": "gt", "threshold": 80.0} | fields
    rule = AlertRule.objects.create(**fields)
    if channel is not None:
        rule.channels.add(channel)
    return rule


def device_make(site: Site, public_id: str, device_type: str = "raspberry_pi") -> Device:
    return Device.objects.create(
        public_id=public_id, name=public_id, device_type=device_type, site=site
    )


def send(device: Device, value: float, at: datetime, metric: str = "temp") -> None:
    """The device reports a value, through the same store as the agents' telemetry."""
    check_metrics_store(device, at, {metric: value})


def evaluate(at: datetime) -> EvaluationReport:
    return alerts_evaluate(now=at)


def alerts_of(rule: AlertRule) -> list[Alert]:
    return list(Alert.objects.filter(rule=rule).order_by("pk"))


def open_alert(rule: AlertRule, device: Device) -> Alert | None:
    return Alert.objects.filter(rule=rule, device=device, state__in=Alert.OPEN_STATES).first()


def deliveries(rule: AlertRule) -> list[tuple[str, int]]:
    rows = NotificationDelivery.objects.filter(alert__rule=rule).order_by("created_at", "pk")
    return list(rows.values_list("event_type", "sequence"))


# --- Conditions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "crossing", "not_crossing", "symbol"),
    [
        ("gt", 80.5, 80.0, ">"),
        ("ge", 80.0, 79.9, "≥"),
        ("lt", 79.5, 80.0, "<"),
        ("le", 80.0, 80.1, "≤"),
        ("eq", 80.0, 80.5, "="),
        ("ne", 81.0, 80.0, "≠"),
    ],
)
def test_each_condition_fires_on_a_crossing_value_only(
    site, t0, channel, condition, crossing, not_crossing, symbol
):
    rule = rule_make(channel, condition=condition, severity="critical")
    crossing_device, calm_device = device_make(site, "pi-1"), device_make(site, "pi-2")
    send(crossing_device, crossing, t0)
    send(calm_device, not_crossing, t0)

    report = evaluate(t0)

    [alert] = alerts_of(rule)
    assert report.fired == 1
    assert (alert.device, alert.state, alert.severity) == (crossing_device, "firing", "critical")
    assert alert.value == alert.last_value == crossing
    assert alert.fired_at == alert.last_notified_at == t0
    assert alert.message == f"temp of pi-1 is {crossing:g} ({symbol} 80)"
    event = Event.objects.get(kind="alert.fired")
    assert (event.alert, event.device, event.message) == (alert, crossing_device, alert.message)
    assert event.data == {"notified": True, "severity": "critical", "value": crossing}
    assert deliveries(rule) == [(FIRED, 0)]


def test_an_open_alert_is_not_fired_again_and_follows_the_value(site, t0, channel):
    rule = rule_make(channel)
    device = device_make(site, "pi-1")
    send(device, 85, t0)
    evaluate(t0)
    send(device, 90, t0 + timedelta(seconds=15))

    report = evaluate(t0 + timedelta(seconds=15))

    [alert] = alerts_of(rule)
    assert report.fired == 0
    assert (alert.value, alert.last_value) == (85, 90)
    assert deliveries(rule) == [(FIRED, 0)]


def test_a_metric_no_device_sent_fires_nothing(site, t0):
    rule_make(metric="never.sent")
    device_make(site, "pi-1")

    assert evaluate(t0).fired == 0
    assert not Alert.objects.exists()


# --- for_seconds, hysteresis, cooldown ----------------------------------------------


def test_for_seconds_fires_when_the_condition_has_held_that_long_not_before(site, t0, channel):
    rule = rule_make(channel, for_seconds=60)
    device = device_make(site, "pi-1")
    send(device, 85, t0)

    evaluate(t0)
    assert AlertPending.objects.get(rule=rule, device=device).since == t0
    evaluate(t0 + timedelta(seconds=59))
    assert alerts_of(rule) == []

    report = evaluate(t0 + timedelta(seconds=60))

    [alert] = alerts_of(rule)
    assert (report.fired, alert.fired_at) == (1, t0 + timedelta(seconds=60))
    assert not AlertPending.objects.filter(rule=rule).exists()


def test_for_seconds_starts_over_when_the_condition_stops_holding_in_between(site, t0):
    rule = rule_make(for_seconds=60)
    device = device_make(site, "pi-1")
    send(device, 85, t0)
    evaluate(t0)
    send(device, 70, t0 + timedelta(seconds=30))
    evaluate(t0 + timedelta(seconds=30))
    assert not AlertPending.objects.filter(rule=rule).exists()
    send(device, 86, t0 + timedelta(seconds=45))
    evaluate(t0 + timedelta(seconds=45))

    evaluate(t0 + timedelta(seconds=90))  # 60 s after t0, but only 45 s of holding
    assert alerts_of(rule) == []
    evaluate(t0 + timedelta(seconds=105))
    assert len(alerts_of(rule)) == 1


def test_hysteresis_resolves_only_below_the_resolve_threshold(site, t0, channel):
    rule = rule_make(channel, threshold=80, resolve_threshold=75)
    device = device_make(site, "pi-1")
    send(device, 85, t0)
    evaluate(t0)

    send(device, 78, t0 + timedelta(seconds=15))  # below 80, not below 75
    evaluate(t0 + timedelta(seconds=15))
    alert = open_alert(rule, device)
    assert (alert.state, alert.last_value) == ("firing", 78)

    send(device, 74, t0 + timedelta(seconds=30))
    report = evaluate(t0 + timedelta(seconds=30))
    alert.refresh_from_db()
    assert report.resolved == 1
    assert (alert.state, alert.resolved_at, alert.resolved_by) == (
        "resolved",
        t0 + timedelta(seconds=30),
        None,
    )
    assert alert.last_value == 74
    assert Event.objects.get(kind="alert.resolved").alert == alert
    assert deliveries(rule) == [(FIRED, 0), (RESOLVED, 0)]

    send(device, 78, t0 + timedelta(seconds=45))  # between again: nothing new
    assert evaluate(t0 + timedelta(seconds=45)).fired == 0


def test_hysteresis_of_lt_resolves_only_above_the_resolve_threshold(site, t0):
    rule = rule_make(condition="lt", threshold=10, resolve_threshold=15)
    device = device_make(site, "pi-1")
    send(device, 5, t0)
    evaluate(t0)
    send(device, 12, t0 + timedelta(seconds=15))
    evaluate(t0 + timedelta(seconds=15))
    assert open_alert(rule, device) is not None

    send(device, 16, t0 + timedelta(seconds=30))
    evaluate(t0 + timedelta(seconds=30))
    assert open_alert(rule, device) is None


def test_without_a_resolve_threshold_the_alert_resolves_once_the_condition_stops(site, t0):
    rule = rule_make()
    device = device_make(site, "pi-1")
    send(device, 85, t0)
    evaluate(t0)
    send(device, 80, t0 + timedelta(seconds=15))

    assert evaluate(t0 + timedelta(seconds=15)).resolved == 1
    assert alerts_of(rule)[0].state == "resolved"


def test_auto_resolve_off_leaves_the_alert_open(site, t0):
    rule = rule_make(auto_resolve=False)
    device = device_make(site, "pi-1")
    send(device, 85, t0)
    evaluate(t0)
    send(device, 20, t0 + timedelta(seconds=15))

    assert evaluate(t0 + timedelta(seconds=15)).resolved == 0
    assert open_alert(rule, device).last_value == 20


def test_cooldown_keeps_a_new_alert_back_until_it_ends(site, t0, channel):
    rule = rule_make(channel, cooldown_seconds=300)
    device = device_make(site, "pi-1")
    send(device, 85, t0)
    evaluate(t0)
    send(device, 70, t0 + timedelta(seconds=15))
    evaluate(t0 + timedelta(seconds=15))  # resolved at t0 + 15
    send(device, 90, t0 + timedelta(seconds=30))

    assert evaluate(t0 + timedelta(seconds=30)).fired == 0
    assert evaluate(t0 + timedelta(seconds=314)).fired == 0

    assert evaluate(t0 + timedelta(seconds=315)).fired == 1
    first, second = alerts_of(rule)
    assert (first.state, second.state, second.value) == ("resolved", "firing", 90)
    assert deliveries(rule) == [(FIRED, 0), (RESOLVED, 0), (FIRED, 0)]


# --- Reminders ----------------------------------------------------------------------


def test_reminders_repeat_until_acknowledged(site, t0, channel, operator):
    from analytics.alerting.services import alert_acknowledge

    rule = rule_make(channel, repeat_seconds=600)
    device = device_make(site, "pi-1")
    send(device, 85, t0)
    evaluate(t0)

    assert evaluate(t0 + timedelta(seconds=599)).reminders == 0
    assert evaluate(t0 + timedelta(seconds=600)).reminders == 1
    assert evaluate(t0 + timedelta(seconds=900)).reminders == 0
    assert evaluate(t0 + timedelta(seconds=1200)).reminders == 1
    alert = open_alert(rule, device)
    assert (alert.reminders_sent, alert.last_notified_at) == (2, t0 + timedelta(seconds=1200))
    reminders = Event.objects.filter(kind="alert.reminder", alert=alert).order_by("pk")
    assert [e.data["reminder"] for e in reminders] == [1, 2]

    alert_acknowledge(alert=alert, actor=operator, now=t0 + timedelta(seconds=1300))
    assert evaluate(t0 + timedelta(seconds=1800)).reminders == 0
    assert evaluate(t0 + timedelta(seconds=3600)).reminders == 0
    assert deliveries(rule) == [(FIRED, 0), (REMINDER, 1), (REMINDER, 2)]


def test_no_reminders_without_repeat_seconds(site, t0, channel):
    rule = rule_make(channel)
    send(device_make(site, "pi-1"), 85, t0)
    evaluate(t0)

    assert evaluate(t0 + timedelta(days=1)).reminders == 0
    assert deliveries(rule) == [(FIRED, 0)]


# --- Scope --------------------------------------------------------------------------


@pytest.fixture
def fleet(site, other_site) -> dict[str, Device]:
    devices = {
        "pi-1": device_make(site, "pi-1"),
        "srv-1": device_make(site, "srv-1", "server"),
        "pi-2": device_make(other_site, "pi-2"),
    }
    return devices


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({}, {"pi-1", "srv-1", "pi-2"}),
        ({"site": "lab-1"}, {"pi-1", "srv-1"}),
        ({"device_type": "server"}, {"srv-1"}),
        ({"device": "pi-2"}, {"pi-2"}),
        ({"site": "lab-1", "device_type": "raspberry_pi"}, {"pi-1"}),
    ],
)
def test_a_rule_looks_only_at_the_devices_in_its_scope(fleet, t0, scope, expected):
    if "site" in scope:
        scope["site"] = Site.objects.get(public_id=scope["site"])
    if "device" in scope:
        scope["device"] = fleet[scope["device"]]
    rule = rule_make(**scope)
    for device in fleet.values():
        send(device, 90, t0)

    evaluate(t0)

    assert {a.device.public_id for a in alerts_of(rule)} == expected


def test_decommissioned_devices_are_out_of_scope_and_their_alerts_resolve(fleet, t0, channel):
    rule = rule_make(channel, auto_resolve=False)
    for device in fleet.values():
        send(device, 90, t0)
    evaluate(t0)
    device_decommission(device=fleet["pi-2"], actor=None)

    report = evaluate(t0 + timedelta(seconds=15))

    assert report.resolved == 1
    assert open_alert(rule, fleet["pi-2"]) is None
    assert {a.device.public_id for a in alerts_of(rule) if a.state == "firing"} == {
        "pi-1",
        "srv-1",
    }
    event = Event.objects.get(kind="alert.resolved")
    assert event.data["reason"] == "device decommissioned"


def test_disabling_a_rule_resolves_its_open_alerts(site, t0, channel):
    rule = rule_make(channel, for_seconds=0)
    send(device_make(site, "pi-1"), 90, t0)
    evaluate(t0)
    AlertRule.objects.filter(pk=rule.pk).update(enabled=False)

    report = evaluate(t0 + timedelta(seconds=15))

    assert (report.resolved, report.rules) == (1, 3)  # the three built-in rules ran
    assert alerts_of(rule)[0].state == "resolved"
    assert deliveries(rule) == [(FIRED, 0), (RESOLVED, 0)]


# --- absent -------------------------------------------------------------------------


def test_absent_fires_when_no_value_is_newer_than_for_seconds(site, t0, channel):
    rule = rule_make(channel, condition="absent", threshold=None, metric="hb", for_seconds=300)
    reporting, silent = device_make(site, "pi-1"), device_make(site, "pi-2")
    send(reporting, 1, t0 - timedelta(seconds=100), metric="hb")
    send(silent, 1, t0 - timedelta(seconds=300), metric="hb")  # exactly for_seconds old

    evaluate(t0)
    [alert] = alerts_of(rule)
    assert (alert.device, alert.value) == (silent, None)
    assert alert.message == "no hb from pi-2 for 300 s"

    evaluate(t0 + timedelta(seconds=200))  # pi-1's value is now 300 s old too
    assert open_alert(rule, reporting) is not None

    send(silent, 1, t0 + timedelta(seconds=210), metric="hb")  # back
    report = evaluate(t0 + timedelta(seconds=215))
    assert report.resolved == 1
    assert open_alert(rule, silent) is None
    assert open_alert(rule, reporting) is not None


def test_absent_counts_a_device_that_never_sent_once_it_exists_for_seconds(site, t0):
    rule = rule_make(condition="absent", metric="hb", for_seconds=600)
    old = device_make(site, "pi-old")
    young = device_make(site, "pi-young")
    Device.objects.filter(pk=old.pk).update(created_at=t0 - timedelta(seconds=600))
    Device.objects.filter(pk=young.pk).update(created_at=t0 - timedelta(seconds=599))

    evaluate(t0)

    assert [a.device for a in alerts_of(rule)] == [old]


# --- Built-in sources ---------------------------------------------------------------


def builtin(key: str) -> AlertRule:
    return AlertRule.objects.get(builtin=key)


def test_the_built_in_rules_exist_after_migrate_enabled(db):  # noqa: ANN001
    rules = AlertRule.objects.filter(builtin__isnull=False).order_by("builtin")

    assert [(r.builtin, r.source, r.severity, r.enabled) for r in rules] == [
        ("device_offline", "device_offline", "critical", True),
        ("ssh_failing", "ssh_failing", "warning", True),
        ("ssh_host_key_mismatch", "ssh_host_key_mismatch", "critical", True),
    ]


def test_device_offline_fires_when_the_sweep_marks_a_device_offline(site, t0, channel):
    rule = builtin("device_offline")
    rule.channels.add(channel)
    device = device_make(site, "pi-1")
    Device.objects.filter(pk=device.pk).update(status="online", last_seen=t0 - timedelta(hours=1))
    assert devices_mark_offline(now=t0) == ["pi-1"]

    evaluate(t0)

    [alert] = alerts_of(rule)
    assert (alert.device, alert.severity, alert.value) == (device, "critical", None)
    assert alert.message == "pi-1 is offline"
    Device.objects.filter(pk=device.pk).update(status="online", last_seen=t0)
    assert evaluate(t0 + timedelta(seconds=15)).resolved == 1
    assert deliveries(rule) == [(FIRED, 0), (RESOLVED, 0)]


def ssh_target_make(site: Site, public_id: str, **fields: object) -> SshTarget:
    device = device_make(site, public_id, "wet_board")
    return SshTarget.objects.create(device=device, host="10.0.0.5", username="wet", **fields)


def test_ssh_failing_fires_after_two_minutes_of_failed_or_circuit_open(site, t0):
    rule = builtin("ssh_failing")
    failed = ssh_target_make(site, "wet-1", last_status="failed", last_error="timed out")
    tripped = ssh_target_make(site, "wet-2", last_status="circuit_open")
    ssh_target_make(site, "wet-3", last_status="ok")
    ssh_target_make(site, "wet-4", last_status="failed", enabled=False)

    evaluate(t0)
    assert alerts_of(rule) == []
    evaluate(t0 + timedelta(seconds=120))

    alerts = alerts_of(rule)
    assert {a.device.public_id for a in alerts} == {"wet-1", "wet-2"}
    assert {a.message for a in alerts} == {
        "SSH checks of wet-1 failing: timed out",
        "SSH checks of wet-2 failing",
    }
    SshTarget.objects.filter(pk=failed.pk).update(last_status="ok")
    evaluate(t0 + timedelta(seconds=135))
    assert open_alert(rule, failed.device) is None
    assert open_alert(rule, tripped.device) is not None


def test_ssh_host_key_mismatch_fires_at_once_critical(site, t0):
    rule = builtin("ssh_host_key_mismatch")
    target = ssh_target_make(site, "wet-1", last_status="host_key_mismatch")
    ssh_target_make(site, "wet-2", last_status="failed")

    evaluate(t0)

    [alert] = alerts_of(rule)
    assert (alert.device, alert.severity) == (target.device, "critical")
    assert alert.message == "SSH host key of wet-1 does not match the pinned key"
    assert not Alert.objects.filter(rule=builtin("ssh_failing")).exists()  # not for 120 s


# --- Silences -----------------------------------------------------------------------


def test_an_alert_opening_under_a_silence_is_notified_when_the_silence_ends(
    site, t0, channel, operator
):
    rule = rule_make(channel)
    device = device_make(site, "pi-1")
    silence = Silence.objects.create(
        device=device, starts_at=t0 - timedelta(minutes=1), ends_at=t0 + timedelta(hours=1),
        reason="rewiring", created_by=operator,
    )  # fmt: skip
    send(device, 85, t0)

    assert evaluate(t0).fired == 1
    alert = open_alert(rule, device)
    assert (alert.state, alert.last_notified_at) == ("firing", None)
    assert deliveries(rule) == []
    assert Event.objects.get(kind="alert.fired").data["notified"] is False
    silenced = Event.objects.get(kind="alert.silenced")
    assert (silenced.alert, silenced.device) == (alert, device)
    assert silenced.data == {"transition": "alert.fired", "silenced_by": [silence.pk]}
    assert silenced.message == "alert.fired of too hot on pi-1 not notified: silenced"

    assert evaluate(t0 + timedelta(minutes=59)).notified_late == 0
    assert evaluate(t0 + timedelta(hours=1)).notified_late == 1
    assert deliveries(rule) == [(FIRED, 0)]
    assert evaluate(t0 + timedelta(hours=2)).notified_late == 0


def test_reminders_are_held_during_a_silence_and_sent_after_it(site, t0, channel):
    rule = rule_make(channel, repeat_seconds=600)
    device = device_make(site, "pi-1")
    send(device, 85, t0)
    evaluate(t0)  # notified: fired
    Silence.objects.create(
        rule=rule, starts_at=t0 + timedelta(seconds=300), ends_at=t0 + timedelta(seconds=1500),
        reason="known",
    )  # fmt: skip

    assert evaluate(t0 + timedelta(seconds=600)).reminders == 0
    assert evaluate(t0 + timedelta(seconds=1200)).reminders == 0
    assert deliveries(rule) == [(FIRED, 0)]

    assert evaluate(t0 + timedelta(seconds=1500)).reminders == 1
    assert deliveries(rule) == [(FIRED, 0), (REMINDER, 1)]
    assert open_alert(rule, device).last_notified_at == t0 + timedelta(seconds=1500)


def test_a_silence_of_another_site_or_rule_does_not_hold_notifications_back(
    site, other_site, t0, channel
):
    rule = rule_make(channel)
    other_rule = rule_make(name="other")
    for scope in ({"site": other_site}, {"rule": other_rule}):
        Silence.objects.create(
            starts_at=t0 - timedelta(hours=1), ends_at=t0 + timedelta(hours=1), reason="x", **scope
        )
    send(device_make(site, "pi-1"), 85, t0)

    evaluate(t0)

    assert deliveries(rule) == [(FIRED, 0)]


def test_a_resolve_under_a_silence_is_not_notified(site, t0, channel):
    rule = rule_make(channel)
    device = device_make(site, "pi-1")
    send(device, 85, t0)
    evaluate(t0)
    Silence.objects.create(
        site=site, starts_at=t0, ends_at=t0 + timedelta(hours=1), reason="maintenance"
    )
    send(device, 20, t0 + timedelta(seconds=15))

    assert evaluate(t0 + timedelta(seconds=15)).resolved == 1
    assert deliveries(rule) == [(FIRED, 0)]
    assert Event.objects.get(kind="alert.resolved").data["notified"] is False
    assert Event.objects.get(kind="alert.silenced").data["transition"] == "alert.resolved"


# --- Cost ---------------------------------------------------------------------------


def fleet_of(site: Site, count: int, prefix: str) -> list[Device]:
    return Device.objects.bulk_create(
        Device(public_id=f"{prefix}-{n}", name=f"{prefix}-{n}", device_type="server", site=site)
        for n in range(count)
    )


def queries_of_rounds(site: Site, t0: datetime, count: int, channel: NotificationChannel) -> tuple:
    """Queries of three rounds over `count` devices: one in which a rule without
    channels fires for each device while a rule with a channel holds (its alerts
    open), one in which nothing changes, one in which every value changed."""
    AlertRule.objects.all().delete()  # the built-in rules too: only these two count
    devices = fleet_of(site, count, f"d{count}")
    rule_make(channel, site=site, name="warm", metric="warm", threshold=10, repeat_seconds=3600)
    rule_make(site=site)  # no channel: fires without notifying
    for device in devices:
        send(device, 20, t0, metric="warm")
    evaluate(t0 - timedelta(seconds=15))  # the warm rule's alerts open (and notify)
    for device in devices:
        send(device, 85, t0)
    counted = []
    for seconds, warm in ((0, None), (15, None), (30, 21.0)):
        at = t0 + timedelta(seconds=seconds)
        for device in devices if warm is not None else []:
            send(device, warm, at, metric="warm")
        with CaptureQueriesContext(connection) as queries:
            evaluate(at)
        counted.append(len(queries))
    assert Alert.objects.filter(state="firing", device__site=site).count() == 2 * count
    assert set(Alert.objects.filter(rule__name="warm").values_list("last_value", flat=True)) == {
        21.0
    }
    return tuple(counted)


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite splits bulk inserts into batches of its variable limit; CI runs PostgreSQL",
)
def test_a_round_costs_the_same_queries_for_10_or_200_devices(site, other_site, t0, channel):
    assert queries_of_rounds(site, t0, 10, channel) == queries_of_rounds(
        other_site, t0, 200, channel
    )


# --- Two evaluators at once (PostgreSQL) --------------------------------------------

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs concurrent writers: PostgreSQL (CI sets DATABASE_URL)",
)


def in_thread(work: Callable[[], T]) -> Callable[[], T]:
    """`work` with this thread's own connection closed afterwards."""

    def run() -> T:
        try:
            return work()
        finally:
            connections.close_all()

    return run


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_two_evaluators_at_once_open_one_alert_and_notify_once(site, channel):
    t0 = timezone.now().replace(microsecond=0) + timedelta(hours=1)
    rules = [rule_make(channel, name=f"hot {n}", threshold=80 + n) for n in range(4)]
    devices = fleet_of(site, 40, "c")
    for device in devices:
        send(device, 90, t0)
    start = threading.Barrier(2)

    def evaluate_together() -> EvaluationReport:
        start.wait()
        return alerts_evaluate(now=t0)

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(in_thread(evaluate_together)) for _ in range(2)]
        reports = [future.result() for future in futures]

    expected = len(rules) * len(devices)
    assert sum(r.failed for r in reports) == 0  # no rule ran into the constraint
    assert sum(r.fired for r in reports) == expected
    assert Alert.objects.filter(rule__in=rules).count() == expected
    fired = NotificationDelivery.objects.filter(alert__rule__in=rules, event_type=FIRED)
    assert fired.count() == expected
    assert Event.objects.filter(kind="alert.fired").count() == expected


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_an_evaluator_skips_a_rule_another_one_holds(site, channel):
    t0 = timezone.now().replace(microsecond=0) + timedelta(hours=1)
    rule = rule_make(channel)
    send(device_make(site, "pi-1"), 90, t0)
    locked, release = threading.Event(), threading.Event()

    def hold_the_rule() -> None:
        with transaction.atomic():
            AlertRule.objects.select_for_update().get(pk=rule.pk)
            locked.set()
            release.wait(timeout=30)

    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(in_thread(hold_the_rule))
        assert locked.wait(timeout=30)
        try:
            busy = alerts_evaluate(now=t0)
        finally:
            release.set()
        holder.result()

    assert (busy.skipped, busy.fired) == (1, 0)
    assert alerts_evaluate(now=t0).fired == 1
    assert deliveries(rule) == [(FIRED, 0)]


def test_one_open_alert_per_rule_and_device_is_a_database_constraint(site, t0):
    rule = rule_make()
    device = device_make(site, "pi-1")
    Alert.objects.create(rule=rule, device=device, severity="warning", fired_at=t0)

    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(
            rule=rule, device=device, state="acknowledged", severity="warning", fired_at=t0
        )
    Alert.objects.create(
        rule=rule, device=device, state="resolved", severity="warning", fired_at=t0
    )
