"""/api/v1/alert-rules, /alerts (+ ack, resolve, silence), /silences,
/notification-channels (+ test, rotate-secret) and /notification-deliveries:
validation (hostile input is a 400, never a 500), permissions, the audit trail,
the webhook secret shown once, state changes and filters."""

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from analytics.alerting import services
from analytics.models import (
    Alert,
    AlertPending,
    AlertRule,
    NotificationChannel,
    NotificationDelivery,
    Silence,
)
from analytics.notifications.channels import notification_channel_create
from devices.models import AuditEntry, Device, Event

RULES = "/api/v1/alert-rules"
ALERTS = "/api/v1/alerts"
SILENCES = "/api/v1/silences"
CHANNELS = "/api/v1/notification-channels"
DELIVERIES = "/api/v1/notification-deliveries"
BUILTIN_SOURCES = ["device_offline", "ssh_failing", "ssh_host_key_mismatch"]


@pytest.fixture
def api(client: APIClient, operator) -> APIClient:  # noqa: ANN001
    client.force_authenticate(operator)
    return client


@pytest.fixture
def viewer_api(viewer) -> APIClient:  # noqa: ANN001
    client = APIClient()
    client.force_authenticate(viewer)
    return client


def rule_body(**fields: object) -> dict:
    return {
        "name": "CPU hot",
        "metric": "cpu_percent",
        "condition": "gt",
        "threshold": 90,
        **fields,
    }


@pytest.fixture
def create_rule(api: APIClient, site) -> Callable[..., dict]:  # noqa: ANN001
    def post(**fields: object) -> dict:
        response = api.post(RULES, rule_body(**fields), format="json")
        assert response.status_code == 201, response.json()
        return response.json()

    return post


def channel_make(name: str = "hooks", **fields: object) -> tuple[NotificationChannel, str | None]:
    fields = {"kind": "webhook", "url": "http://127.0.0.1:9/hook", **fields}
    return notification_channel_create(actor=None, name=name, **fields)


def builtin_rule(source: str = "device_offline") -> AlertRule:
    return AlertRule.objects.get(builtin=source)


def alert_make(
    rule: AlertRule,
    device: Device,
    *,
    state: str = Alert.State.FIRING,
    minutes_ago: int = 0,
    severity: str = "warning",
    value: float | None = 93.5,
) -> Alert:
    return Alert.objects.create(
        rule=rule,
        device=device,
        state=state,
        severity=severity,
        value=value,
        last_value=value,
        message=f"{rule.name} on {device.public_id}",
        fired_at=timezone.now() - timedelta(minutes=minutes_ago),
        resolved_at=timezone.now() if state == Alert.State.RESOLVED else None,
    )


@pytest.fixture
def metric_rule(site) -> AlertRule:  # noqa: ANN001
    return AlertRule.objects.create(
        name="CPU hot", metric="cpu_percent", condition="gt", threshold=90
    )


@pytest.fixture
def firing(metric_rule: AlertRule, agent) -> Alert:  # noqa: ANN001
    return alert_make(metric_rule, agent.device)


def bad_request(response) -> dict:  # noqa: ANN001
    assert response.status_code == 400, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    return response.json()


# --- Rules: create and read -------------------------------------------------------------------


def test_creating_a_metric_rule_stores_every_field_and_audits_it(api, create_rule, site, agent):
    channel, _ = channel_make()

    body = create_rule(
        for_seconds=300,
        severity="critical",
        site="lab-1",
        device_type="raspberry_pi",
        device="pi-1",
        cooldown_seconds=600,
        repeat_seconds=3600,
        resolve_threshold=80,
        channels=[channel.pk],
    )

    rule = AlertRule.objects.get(pk=body["id"])
    assert (rule.metric, rule.condition, rule.threshold, rule.resolve_threshold) == (
        "cpu_percent",
        "gt",
        90,
        80,
    )
    assert (rule.site, rule.device, rule.device_type) == (site, agent.device, "raspberry_pi")
    assert list(rule.channels.all()) == [channel]
    assert body["site"] == "lab-1" and body["device"] == "pi-1"
    assert body["channels"] == [channel.pk] and body["builtin"] is None
    assert (body["for_seconds"], body["cooldown_seconds"], body["repeat_seconds"]) == (
        300,
        600,
        3600,
    )
    entry = AuditEntry.objects.get(action="alert_rule.create")
    assert (entry.actor, entry.target_type, entry.target_id) == ("otto", "alertrule", str(rule.pk))
    assert entry.data["site"] == "lab-1" and entry.data["channels"] == [channel.pk]


def test_a_rule_with_only_the_required_fields_gets_the_defaults(create_rule):
    body = create_rule()

    assert body["severity"] == "warning" and body["enabled"] is True
    assert body["auto_resolve"] is True and body["resolve_threshold"] is None
    assert body["site"] is None and body["device"] is None and body["channels"] == []


def test_the_builtin_rules_are_listed_enabled(viewer_api):
    response = viewer_api.get(RULES, {"page_size": 500})

    assert response.status_code == 200
    builtin = {r["builtin"]: r for r in response.json()["results"] if r["builtin"]}
    assert sorted(builtin) == BUILTIN_SOURCES
    assert all(rule["enabled"] for rule in builtin.values())


def test_rules_filter_by_source_and_site(api, create_rule, other_site):
    create_rule(name="here", site="lab-1")
    create_rule(name="there", site="lab-2")

    by_site = api.get(RULES, {"site": "lab-2"}).json()["results"]
    by_source = api.get(RULES, {"source": "ssh_failing"}).json()["results"]

    assert [rule["name"] for rule in by_site] == ["there"]
    assert [rule["builtin"] for rule in by_source] == ["ssh_failing"]


def test_the_rule_list_costs_the_same_queries_for_many_rules(api, create_rule, site, agent):
    channel, _ = channel_make()
    api.get(RULES)  # the user's permissions are cached from here on
    with CaptureQueriesContext(connection) as few:
        assert api.get(RULES).status_code == 200
    for n in range(10):
        create_rule(name=f"rule {n}", site="lab-1", device="pi-1", channels=[channel.pk])

    with CaptureQueriesContext(connection) as many:
        assert api.get(RULES).status_code == 200

    assert len(many) == len(few)


def test_absent_needs_no_threshold_and_keeps_none(create_rule):
    body = create_rule(name="silent", condition="absent", threshold=12, for_seconds=600)

    assert body["condition"] == "absent" and body["threshold"] is None


def test_a_builtin_source_ignores_metric_and_threshold(create_rule):
    body = create_rule(
        name="POS offline",
        source="device_offline",
        metric="not a metric!",
        threshold=None,
        resolve_threshold=5,
        device_type="pos_terminal",
        severity="critical",
    )

    assert body["source"] == "device_offline" and body["builtin"] is None
    assert (body["metric"], body["threshold"], body["resolve_threshold"]) == ("", None, None)


@pytest.mark.parametrize(
    ("condition", "threshold", "resolve"),
    [("gt", 80, 80), ("ge", 80, 75.5), ("lt", 10, 10), ("le", 10, 12), ("gt", -5, -20)],
)
def test_a_resolve_threshold_on_the_resolving_side_is_accepted(
    create_rule,
    condition: str,
    threshold: float,
    resolve: float,
):
    body = create_rule(condition=condition, threshold=threshold, resolve_threshold=resolve)

    assert body["resolve_threshold"] == resolve


# --- Rules: validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"metric": ""}, "metric"),
        ({"metric": "cpu percent"}, "metric"),
        ({"metric": "9cpu"}, "metric"),
        ({"metric": "cpu\tload"}, "metric"),
        ({"metric": "m" * 101}, "metric"),
        ({"threshold": None}, "threshold"),
        ({"threshold": "80"}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"threshold": [80]}, "threshold"),
        ({"threshold": 1e300}, "threshold"),
        ({"condition": "absent", "for_seconds": 0}, "for_seconds"),
        ({"condition": "absent", "for_seconds": 60, "resolve_threshold": 1}, "resolve_threshold"),
        ({"resolve_threshold": 95}, "resolve_threshold"),
        ({"condition": "lt", "threshold": 10, "resolve_threshold": 5}, "resolve_threshold"),
        ({"condition": "le", "threshold": 10, "resolve_threshold": 9.99}, "resolve_threshold"),
        ({"condition": "eq", "threshold": 1, "resolve_threshold": 1}, "resolve_threshold"),
        ({"condition": "between"}, "condition"),
        ({"source": "telepathy"}, "source"),
        ({"severity": "apocalyptic"}, "severity"),
        ({"for_seconds": -1}, "for_seconds"),
        ({"for_seconds": 30 * 86400 + 1}, "for_seconds"),
        ({"cooldown_seconds": "soon"}, "cooldown_seconds"),
        ({"repeat_seconds": 1.5}, "repeat_seconds"),
        ({"repeat_seconds": 2**70}, None),  # the parser refuses it first
        ({"name": ""}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"name": {"en": "x"}}, "name"),
        ({"enabled": "maybe"}, "enabled"),
        ({"auto_resolve": None}, "auto_resolve"),
        ({"site": "nowhere"}, "site"),
        ({"device": "ghost"}, "device"),
        ({"device": ["pi-1"]}, "device"),
        ({"device_type": "no spaces allowed"}, "device_type"),
        ({"channels": "1"}, "channels"),
        ({"channels": [0]}, "channels"),
        ({"channels": [2**40]}, "channels"),
        ({"channels": [424242]}, "channels"),
        ({"channels": list(range(1, 60))}, "channels"),
        ({"builtin": "device_offline"}, "builtin"),
        ({"id": 7}, "id"),
    ],
)
def test_invalid_rules_are_400_naming_the_field(api, site, agent, fields: dict, field: str | None):
    response = api.post(RULES, rule_body(**fields), format="json")

    body = bad_request(response)
    if field is not None:
        assert field in body, body
    assert not AlertRule.objects.filter(builtin__isnull=True).exists()


def test_a_device_outside_the_rules_site_or_type_is_refused(api, other_site, agent):
    response = api.post(RULES, rule_body(site="lab-2", device="pi-1"), format="json")
    wrong_type = api.post(RULES, rule_body(device_type="server", device="pi-1"), format="json")

    assert "pi-1 is not at site lab-2" in bad_request(response)["device"][0]
    assert "not a server" in bad_request(wrong_type)["device"][0]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "x", "metric": "cpu", "threshold": NaN}',
        b'{"name": "x", "metric": "cpu", "threshold": Infinity}',
        b'{"name": "x", "metric": "cpu", "threshold": -Infinity}',
        b'{"name": "x", "metric": "cpu", "threshold": 1e999}',
        b'{"name": "x\\u0000", "metric": "cpu", "threshold": 1}',
        b'{"name": "x", "metric": "cpu\\u0000", "threshold": 1}',
        b'{"name": "x", "metric": "cpu", "threshold": 1, "site": "lab\\u0000"}',
        b'{"name": "x", "metric": "cpu", "threshold": 1, "channels": [1e400]}',
        b'["a", "list"]',
        b'"a string"',
        b"null",
        b"{",
        b'{"name": "' + b"x" * 100_000 + b'", "metric": "cpu", "threshold": 1}',
    ],
)
def test_hostile_bodies_are_400_never_500(api, site, raw: bytes):
    response = api.generic("POST", RULES, raw, content_type="application/json")

    bad_request(response)


def test_a_form_encoded_body_is_validated_the_same(api, site):
    response = api.post(RULES, {"name": "x", "metric": "cpu", "threshold": "90"})

    assert "threshold" in bad_request(response)  # a string is not a number


# --- Rules: change and delete ----------------------------------------------------------------


def test_a_patch_changes_only_what_it_names_and_audits_the_change(api, create_rule):
    rule = create_rule(resolve_threshold=80, severity="info")
    channel, _ = channel_make()

    response = api.patch(
        f"{RULES}/{rule['id']}",
        {"threshold": 95, "severity": "critical", "channels": [channel.pk]},
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["threshold"], body["severity"], body["resolve_threshold"]) == (95, "critical", 80)
    assert body["metric"] == "cpu_percent" and body["channels"] == [channel.pk]
    entry = AuditEntry.objects.get(action="alert_rule.change")
    assert entry.data["changed"] == {
        "threshold": 95,
        "severity": "critical",
        "channels": [channel.pk],
    }


def test_a_patch_is_checked_against_the_rules_other_values(api, create_rule):
    rule = create_rule(resolve_threshold=80)

    response = api.patch(f"{RULES}/{rule['id']}", {"threshold": 70}, format="json")

    assert "resolve_threshold" in bad_request(response)
    assert AlertRule.objects.get(pk=rule["id"]).threshold == 90


def test_a_patch_that_changes_nothing_is_not_audited(api, create_rule):
    rule = create_rule()

    response = api.patch(f"{RULES}/{rule['id']}", {"threshold": 90}, format="json")

    assert response.status_code == 200
    assert not AuditEntry.objects.filter(action="alert_rule.change").exists()


def test_changing_the_condition_restarts_pending_periods(api, create_rule, agent):
    rule = AlertRule.objects.get(pk=create_rule()["id"])
    AlertPending.objects.create(rule=rule, device=agent.device, since=timezone.now(), value=91)

    api.patch(f"{RULES}/{rule.pk}", {"severity": "critical"}, format="json")
    assert AlertPending.objects.filter(rule=rule).exists()  # not a condition

    api.patch(f"{RULES}/{rule.pk}", {"threshold": 50}, format="json")
    assert not AlertPending.objects.filter(rule=rule).exists()


def test_a_builtin_rule_can_be_changed_and_disabled_but_keeps_its_source(api):
    rule = builtin_rule()

    changed = api.patch(f"{RULES}/{rule.pk}", {"enabled": False, "severity": "info"}, format="json")
    resourced = api.patch(
        f"{RULES}/{rule.pk}", {"source": "metric", "metric": "cpu", "threshold": 1}, format="json"
    )

    assert changed.status_code == 200
    assert (changed.json()["enabled"], changed.json()["severity"]) == (False, "info")
    assert "source" in bad_request(resourced)
    assert AlertRule.objects.get(pk=rule.pk).source == "device_offline"


def test_a_builtin_rule_cannot_be_deleted(api):
    rule = builtin_rule("ssh_failing")

    response = api.delete(f"{RULES}/{rule.pk}")

    assert response.status_code == 409
    assert response.json()["code"] == "builtin_rule"
    assert AlertRule.objects.filter(pk=rule.pk).exists()


def test_a_rule_with_open_alerts_is_not_deleted(api, firing):
    response = api.delete(f"{RULES}/{firing.rule_id}")

    assert response.status_code == 409
    assert response.json()["code"] == "rule_has_open_alerts"
    assert Alert.objects.filter(pk=firing.pk).exists()


def test_deleting_a_rule_deletes_its_alerts_keeps_their_events_and_audits(api, firing):
    services.alert_acknowledge(alert=firing, actor=None)
    services.alert_resolve(alert=firing, actor=None)
    rule_pk = firing.rule_id

    response = api.delete(f"{RULES}/{rule_pk}")

    assert response.status_code == 204
    assert not AlertRule.objects.filter(pk=rule_pk).exists()
    assert not Alert.objects.filter(pk=firing.pk).exists()
    assert Event.objects.filter(kind="alert.acknowledged", alert__isnull=True).exists()
    assert Event.objects.filter(kind="alert.resolved", alert__isnull=True).exists()
    entry = AuditEntry.objects.get(action="alert_rule.delete")
    assert (entry.target_id, entry.data) == (str(rule_pk), {"name": "CPU hot"})


@pytest.mark.parametrize("path", ["0", "999999", "99999999999999999999999"])
def test_unknown_rule_ids_are_404(api, path: str):
    assert api.get(f"{RULES}/{path}").status_code == 404
    assert api.patch(f"{RULES}/{path}", {}, format="json").status_code == 404
    assert api.delete(f"{RULES}/{path}").status_code == 404


def test_a_non_numeric_rule_id_matches_no_route(api):
    assert api.get(f"{RULES}/abc").status_code == 404


# --- Permissions -------------------------------------------------------------------------------


def test_viewers_read_everything_and_change_nothing(viewer_api, firing, metric_rule):
    channel, _ = channel_make()
    silence = services.silence_create(
        actor=None,
        device=firing.device,
        starts_at=timezone.now(),
        ends_at=timezone.now() + timedelta(hours=1),
        reason="x",
    )
    reads = [
        RULES,
        f"{RULES}/{metric_rule.pk}",
        ALERTS,
        f"{ALERTS}/{firing.pk}",
        SILENCES,
        f"{SILENCES}/{silence.pk}",
        CHANNELS,
        f"{CHANNELS}/{channel.pk}",
        DELIVERIES,
    ]
    writes = [
        ("post", RULES, rule_body()),
        ("patch", f"{RULES}/{metric_rule.pk}", {"enabled": False}),
        ("delete", f"{RULES}/{metric_rule.pk}", None),
        ("post", f"{ALERTS}/{firing.pk}/ack", {}),
        ("post", f"{ALERTS}/{firing.pk}/resolve", None),
        ("post", f"{ALERTS}/{firing.pk}/silence", {"hours": 1, "reason": "x"}),
        ("post", SILENCES, {"device": "pi-1", "ends_at": "2099-01-01T00:00:00Z", "reason": "x"}),
        ("delete", f"{SILENCES}/{silence.pk}", None),
        ("post", CHANNELS, {"name": "n", "kind": "email", "addresses": ["a@example.org"]}),
        ("patch", f"{CHANNELS}/{channel.pk}", {"enabled": False}),
        ("delete", f"{CHANNELS}/{channel.pk}", None),
        ("post", f"{CHANNELS}/{channel.pk}/test", None),
        ("post", f"{CHANNELS}/{channel.pk}/rotate-secret", None),
    ]

    for path in reads:
        assert viewer_api.get(path).status_code == 200, path
    for method, path, body in writes:
        response = getattr(viewer_api, method)(path, body, format="json")
        assert response.status_code == 403, (method, path, response.status_code)
    firing.refresh_from_db()
    assert firing.state == "firing" and AlertRule.objects.filter(pk=metric_rule.pk).exists()
    assert not AuditEntry.objects.filter(actor="vera").exists()


@pytest.mark.parametrize(
    "path", [RULES, f"{RULES}/1", ALERTS, f"{ALERTS}/1", SILENCES, CHANNELS, DELIVERIES]
)
def test_anonymous_requests_are_401(client, db, path: str):  # noqa: ANN001
    response = client.get(path)

    assert response.status_code == 401
    assert client.post(path, {}, format="json").status_code in (401, 405)


def test_an_integration_token_of_an_operator_works(client, operator, api_token, create_rule):  # noqa: ANN001
    create_rule()
    token = api_token(operator)

    response = client.get(RULES, HTTP_AUTHORIZATION=f"Token {token}")

    assert response.status_code == 200 and response.json()["count"] >= 4


# --- Alerts ---------------------------------------------------------------------------------


def test_alerts_list_newest_first_with_rule_and_device(api, metric_rule, make_agent):
    old = alert_make(metric_rule, make_agent("pi-1").device, minutes_ago=30)
    new = alert_make(metric_rule, make_agent("pi-2", name="Pi two").device, minutes_ago=1)

    body = api.get(ALERTS).json()

    assert [a["id"] for a in body["results"]] == [new.pk, old.pk]
    first = body["results"][0]
    assert first["rule"] == {
        "id": metric_rule.pk,
        "name": "CPU hot",
        "source": "metric",
        "metric": "cpu_percent",
        "condition": "gt",
        "threshold": 90.0,
    }
    assert first["device"] == {"device_id": "pi-2", "name": "Pi two", "site": "lab-1"}
    assert (first["state"], first["value"], first["acknowledged_by"]) == ("firing", 93.5, None)


def test_alerts_filter_by_state_severity_device_site_and_rule(
    api, metric_rule, make_agent, other_site
):
    here, there = make_agent("pi-1").device, make_agent("pi-9", site_public_id="lab-2").device
    offline = builtin_rule()
    firing = alert_make(metric_rule, here)
    acked = alert_make(offline, here, state="acknowledged", severity="critical")
    resolved = alert_make(metric_rule, there, state="resolved")

    def ids(**query: object) -> set[int]:
        response = api.get(ALERTS, query)
        assert response.status_code == 200, response.json()
        return {alert["id"] for alert in response.json()["results"]}

    assert ids(state="open") == {firing.pk, acked.pk}
    assert ids(state="resolved") == {resolved.pk}
    assert ids(state="acknowledged") == {acked.pk}
    assert ids(severity="critical") == {acked.pk}
    assert ids(device="pi-9") == {resolved.pk}
    assert ids(site="lab-2") == {resolved.pk}
    assert ids(rule=offline.pk) == {acked.pk}
    assert ids(rule=metric_rule.pk, state="open") == {firing.pk}
    assert ids(rule=2**62) == set()
    assert ids(device="nobody") == set()


@pytest.mark.parametrize(
    "query",
    [
        {"state": "sleeping"},
        {"severity": "loud"},
        {"rule": "abc"},
        {"rule": "1.5"},
        {"rule": "9" * 5000},
        {"rule": "-1"},
        {"page": "0"},
    ],
)
def test_bad_alert_filters_are_400_or_404_never_500(api, firing, query: dict):
    response = api.get(ALERTS, query)

    assert response.status_code in (400, 404), response.status_code
    assert response["Content-Type"].startswith("application/json")


def test_the_alert_list_costs_the_same_queries_for_many_alerts(
    api, operator, metric_rule, make_agent
):
    device = make_agent("pi-1").device
    alert_make(metric_rule, device)
    api.get(ALERTS)  # the user's permissions are cached from here on
    with CaptureQueriesContext(connection) as one:
        assert api.get(ALERTS).status_code == 200
    for n in range(2, 12):
        other = make_agent(f"pi-{n}").device
        alerts = alert_make(metric_rule, other)
        services.alert_acknowledge(alert=alerts, actor=operator)

    with CaptureQueriesContext(connection) as many:
        assert api.get(ALERTS).status_code == 200

    assert len(many) == len(one)


def test_an_alerts_detail_has_its_rule_device_acknowledger_note_and_events(api, firing):
    api.post(f"{ALERTS}/{firing.pk}/ack", {"note": "fan replaced"}, format="json")

    body = api.get(f"{ALERTS}/{firing.pk}").json()

    assert body["rule"]["name"] == "CPU hot" and body["device"]["device_id"] == "pi-1"
    assert (body["acknowledged_by"], body["ack_note"]) == ("otto", "fan replaced")
    assert body["acknowledged_at"] and body["fired_at"] and body["resolved_at"] is None
    assert [e["kind"] for e in body["events"]] == ["alert.acknowledged"]
    assert set(body["events"][0]) == {"id", "kind", "message", "created_at"}


def test_acknowledging_records_who_and_the_note_and_audits(api, firing):
    response = api.post(f"{ALERTS}/{firing.pk}/ack", {"note": "on it"}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["state"] == "acknowledged"
    firing.refresh_from_db()
    assert (firing.state, firing.acknowledged_by.username, firing.ack_note) == (
        "acknowledged",
        "otto",
        "on it",
    )
    assert AuditEntry.objects.filter(action="alert.acknowledge", actor="otto").exists()


def test_acknowledging_without_a_body_is_fine(api, firing):
    response = api.post(f"{ALERTS}/{firing.pk}/ack")

    assert response.status_code == 200 and response.json()["ack_note"] == ""


@pytest.mark.parametrize(
    "body", [{"note": "n" * 501}, {"note": {"a": 1}}, {"note": None}, {"reason": "x"}, ["note"]]
)
def test_a_bad_acknowledgement_is_400_and_changes_nothing(api, firing, body: object):
    bad_request(api.post(f"{ALERTS}/{firing.pk}/ack", body, format="json"))

    firing.refresh_from_db()
    assert firing.state == "firing"


def test_resolving_by_hand_and_then_again_is_409(api, firing):
    first = api.post(f"{ALERTS}/{firing.pk}/resolve")
    again = api.post(f"{ALERTS}/{firing.pk}/resolve")
    ack = api.post(f"{ALERTS}/{firing.pk}/ack", {}, format="json")

    assert first.status_code == 200
    assert (first.json()["state"], first.json()["resolved_by"]) == ("resolved", "otto")
    assert again.status_code == 409 and again.json()["code"] == "alert_resolved"
    assert ack.status_code == 409
    assert AuditEntry.objects.filter(action="alert.resolve").count() == 1


def test_silencing_from_an_alert_covers_its_rule_on_its_device(api, firing):
    before = timezone.now()

    response = api.post(
        f"{ALERTS}/{firing.pk}/silence", {"hours": 2, "reason": "replacing the fan"}, format="json"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["device"], body["rule"], body["site"]) == ("pi-1", firing.rule_id, None)
    assert (body["reason"], body["active"], body["created_by"]) == (
        "replacing the fan",
        True,
        "otto",
    )
    silence = Silence.objects.get(pk=body["id"])
    assert timedelta(hours=2) <= silence.ends_at - before < timedelta(hours=2, minutes=1)
    firing.refresh_from_db()
    assert firing.state == "firing"  # silenced, still open


@pytest.mark.parametrize(
    "body",
    [
        {"hours": 0, "reason": "x"},
        {"hours": -1, "reason": "x"},
        {"hours": 24 * 365 + 1, "reason": "x"},
        {"hours": "2", "reason": "x"},
        {"hours": True, "reason": "x"},
        {"reason": "x"},
        {"hours": 1, "reason": "r" * 501},
    ],
)
def test_a_bad_silence_from_an_alert_is_400(api, firing, body: dict):
    bad_request(api.post(f"{ALERTS}/{firing.pk}/silence", body, format="json"))

    assert not Silence.objects.exists()


def test_actions_on_an_unknown_alert_are_404(api, db):  # noqa: ANN001
    for action in ("ack", "resolve"):
        assert api.post(f"{ALERTS}/424242/{action}", {}, format="json").status_code == 404
    response = api.post(f"{ALERTS}/424242/silence", {"hours": 1, "reason": "x"}, format="json")
    assert response.status_code == 404


# --- Silences ---------------------------------------------------------------------------------


def silence_body(**fields: object) -> dict:
    ends = (timezone.now() + timedelta(hours=4)).isoformat()
    return {"site": "lab-1", "ends_at": ends, "reason": "power works", **fields}


def test_creating_a_silence_starts_now_by_default_and_audits(api, site):
    response = api.post(SILENCES, silence_body(), format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["site"], body["active"], body["created_by"]) == ("lab-1", True, "otto")
    silence = Silence.objects.get(pk=body["id"])
    assert abs(silence.starts_at - timezone.now()) < timedelta(minutes=1)
    assert AuditEntry.objects.filter(action="silence.create", actor="otto").exists()


def test_silences_filter_active(api, site, metric_rule):
    now = timezone.now()
    current = services.silence_create(
        actor=None, site=site, starts_at=now, ends_at=now + timedelta(hours=1), reason="now"
    )
    planned = services.silence_create(
        actor=None,
        rule=metric_rule,
        starts_at=now + timedelta(days=1),
        ends_at=now + timedelta(days=2),
        reason="later",
    )

    active = api.get(SILENCES, {"active": "true"}).json()["results"]
    inactive = api.get(SILENCES, {"active": "false"}).json()["results"]

    assert [s["id"] for s in active] == [current.pk]
    assert [s["id"] for s in inactive] == [planned.pk] and inactive[0]["active"] is False


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"site": None}, 400),  # no scope and not fleet-wide
        ({"ends_at": "2000-01-01T00:00:00Z"}, 400),  # over already
        ({"starts_at": "2099-01-02T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"}, 400),
        ({"ends_at": "10000-01-01T00:00:00Z"}, 400),
        ({"ends_at": "yesterday"}, 400),
        ({"reason": ""}, 400),
        ({"reason": "r" * 501}, 400),
        ({"site": "nowhere"}, 400),
        ({"rule": 2**40}, 400),
        ({"rule": "one"}, 400),
        ({"fleet_wide": True}, 400),  # and a site
        ({"mood": "calm"}, 400),
    ],
)
def test_bad_silences_are_400(api, site, fields: dict, status: int):
    response = api.post(SILENCES, silence_body(**fields), format="json")

    assert response.status_code == status, response.json()
    assert not Silence.objects.exists()


def test_a_fleet_wide_silence_must_be_asked_for(api, db):  # noqa: ANN001
    response = api.post(SILENCES, silence_body(site=None, fleet_wide=True), format="json")

    assert response.status_code == 201, response.json()
    assert (response.json()["site"], response.json()["device"]) == (None, None)


def test_deleting_a_silence_ends_it_and_audits(api, site):
    silence_id = api.post(SILENCES, silence_body(), format="json").json()["id"]

    response = api.delete(f"{SILENCES}/{silence_id}")

    assert response.status_code == 204
    assert not Silence.objects.exists()
    assert AuditEntry.objects.filter(action="silence.delete", target_id=str(silence_id)).exists()
    assert api.delete(f"{SILENCES}/{silence_id}").status_code == 404


# --- Notification channels ----------------------------------------------------------------------


def secret_absent(payload: object, secret: str) -> bool:
    return secret not in json.dumps(payload)


def test_a_webhook_channels_secret_is_shown_once(api, db):  # noqa: ANN001
    response = api.post(
        CHANNELS,
        {"name": "lab", "kind": "webhook", "url": "http://receiver:9000/hook"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(secret) > 20
    assert NotificationChannel.objects.get(pk=body["id"]).secret == secret
    detail = api.get(f"{CHANNELS}/{body['id']}").json()
    listed = api.get(CHANNELS).json()
    patched = api.patch(f"{CHANNELS}/{body['id']}", {"enabled": False}, format="json").json()
    assert "secret" not in detail and all("secret" not in c for c in listed["results"])
    for payload in (detail, listed, patched):
        assert secret_absent(payload, secret)
    entry = AuditEntry.objects.get(action="notification_channel.create")
    assert secret_absent(entry.data, secret)


def test_an_email_channel_has_no_secret(api, db):  # noqa: ANN001
    response = api.post(
        CHANNELS,
        {"name": "on call", "kind": "email", "addresses": ["a@example.org", "b@example.org"]},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["secret"] is None
    assert response.json()["addresses"] == ["a@example.org", "b@example.org"]


def test_rotating_the_secret_shows_the_new_one_once(api, db):  # noqa: ANN001
    channel, old = channel_make()

    response = api.post(f"{CHANNELS}/{channel.pk}/rotate-secret")

    assert response.status_code == 200, response.json()
    new = response.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert NotificationChannel.objects.get(pk=channel.pk).secret == new
    assert secret_absent(api.get(f"{CHANNELS}/{channel.pk}").json(), new)
    email, _ = channel_make("mail", kind="email", url="", addresses=["a@example.org"])
    refused = api.post(f"{CHANNELS}/{email.pk}/rotate-secret")
    assert refused.status_code == 400 and refused.json()["code"] == "not_a_webhook"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "kind": "webhook"},  # no URL
        {"name": "x", "kind": "webhook", "url": "ftp://example.org/"},
        {"name": "x", "kind": "webhook", "url": "http://user:pw@example.org/"},
        {"name": "x", "kind": "webhook", "url": "http://exa mple.org/"},
        {"name": "x", "kind": "webhook", "url": "h" * 501},
        {"name": "x", "kind": "email"},  # no addresses
        {"name": "x", "kind": "email", "addresses": ["not-an-address"]},
        {"name": "x", "kind": "email", "addresses": "a@example.org"},
        {"name": "x", "kind": "email", "addresses": [f"a{n}@example.org" for n in range(51)]},
        {"name": "x", "kind": "pigeon", "url": "http://example.org/"},
        {"name": "", "kind": "webhook", "url": "http://example.org/"},
        {"name": "n" * 101, "kind": "webhook", "url": "http://example.org/"},
        {"name": "x", "kind": "webhook", "url": "http://example.org/", "min_severity": "meh"},
        {"name": "x", "kind": "webhook", "url": "http://example.org/", "secret": "whsec_x"},
    ],
)
def test_bad_channels_are_400(api, db, body: dict):  # noqa: ANN001
    bad_request(api.post(CHANNELS, body, format="json"))

    assert not NotificationChannel.objects.exists()


def test_a_taken_channel_name_is_409(api, db):  # noqa: ANN001
    channel_make("hooks")

    response = api.post(
        CHANNELS, {"name": "hooks", "kind": "webhook", "url": "http://x.example/"}, format="json"
    )

    assert response.status_code == 409


def test_a_channels_kind_cannot_be_patched(api, db):  # noqa: ANN001
    channel, _ = channel_make()

    response = api.patch(f"{CHANNELS}/{channel.pk}", {"kind": "email"}, format="json")

    assert "kind" in bad_request(response)


def test_patching_a_channel_audits_what_changed(api, db):  # noqa: ANN001
    channel, _ = channel_make()

    response = api.patch(
        f"{CHANNELS}/{channel.pk}",
        {"url": "http://10.1.2.3:8080/in", "min_severity": "critical"},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert (response.json()["url"], response.json()["min_severity"]) == (
        "http://10.1.2.3:8080/in",
        "critical",
    )
    entry = AuditEntry.objects.get(action="notification_channel.change")
    assert set(entry.data["changed"]) == {"url", "min_severity"}


def test_deleting_a_channel_detaches_it_from_rules_and_audits(api, create_rule):
    channel, _ = channel_make()
    rule = create_rule(channels=[channel.pk])

    response = api.delete(f"{CHANNELS}/{channel.pk}")

    assert response.status_code == 204
    assert not NotificationChannel.objects.exists()
    assert api.get(f"{RULES}/{rule['id']}").json()["channels"] == []
    entry = AuditEntry.objects.get(action="notification_channel.delete")
    assert entry.data == {"name": "hooks", "kind": "webhook", "rules": [rule["id"]]}


def test_a_test_notification_reaches_a_real_receiver_and_is_logged(api, http_receiver):
    channel, _ = channel_make(url=http_receiver.url("/in"))

    response = api.post(f"{CHANNELS}/{channel.pk}/test")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["event_type"], body["attempts"]) == ("delivered", "test", 1)
    assert body["last_status_code"] == 200 and body["payload"]["type"] == "test"
    assert [r.path for r in http_receiver.requests] == ["/in"]
    assert http_receiver.requests[0].headers["webhook-id"] == body["message_id"]
    assert AuditEntry.objects.filter(action="notification_channel.test").exists()


def test_a_failed_test_notification_says_why(api, http_receiver):
    http_receiver.script(500)
    channel, _ = channel_make(url=http_receiver.url())

    body = api.post(f"{CHANNELS}/{channel.pk}/test").json()

    assert body["status"] == "failed" and body["last_status_code"] == 500
    assert body["last_error"]


# --- Deliveries ---------------------------------------------------------------------------------


def delivery_make(channel: NotificationChannel, alert: Alert | None, **fields: object):
    fields = {"event_type": "alert.fired", "payload": {"type": "alert.fired"}, **fields}
    return NotificationDelivery.objects.create(
        channel=channel,
        alert=alert,
        message_id=f"msg_{NotificationDelivery.objects.count()}",
        **fields,
    )


def test_deliveries_filter_and_keep_payloads_out_of_the_list(api, firing):
    hooks, _ = channel_make("hooks")
    mail, _ = channel_make("mail", kind="email", url="", addresses=["a@example.org"])
    fired = delivery_make(hooks, firing, status="failed", attempts=3, last_error="HTTP 503")
    mailed = delivery_make(mail, firing, status="delivered", attempts=1)
    tested = delivery_make(hooks, None, event_type="test", payload={"type": "test"})

    def ids(**query: object) -> list[int]:
        response = api.get(DELIVERIES, query)
        assert response.status_code == 200, response.json()
        assert all("payload" not in d for d in response.json()["results"])
        return [d["id"] for d in response.json()["results"]]

    assert ids() == [tested.pk, mailed.pk, fired.pk]
    assert ids(channel=hooks.pk) == [tested.pk, fired.pk]
    assert ids(alert=firing.pk) == [mailed.pk, fired.pk]
    assert ids(status="failed") == [fired.pk]
    assert ids(event_type="test") == [tested.pk]
    listed = api.get(DELIVERIES, {"status": "failed"}).json()["results"][0]
    assert (listed["attempts"], listed["last_error"], listed["channel"], listed["alert"]) == (
        3,
        "HTTP 503",
        hooks.pk,
        firing.pk,
    )
    detail = api.get(f"{DELIVERIES}/{fired.pk}").json()
    assert detail["payload"] == {"type": "alert.fired"}


@pytest.mark.parametrize(
    "query", [{"channel": "x"}, {"alert": "1e3"}, {"status": "lost"}, {"channel": "9" * 30}]
)
def test_bad_delivery_filters_are_400(api, db, query: dict):  # noqa: ANN001
    bad_request(api.get(DELIVERIES, query))
