"""The admin of alerting: rules (form validated as the API validates), alerts
(filters; acknowledge, resolve and silence as actions and buttons; events and
deliveries on the page), silences, channels (the secret shown once, "Send test"
to a real receiver), the delivery log, and the open alerts panel of the device
page."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from analytics.alerting import services
from analytics.models import Alert, AlertRule, NotificationChannel, NotificationDelivery, Silence
from analytics.notifications.channels import notification_channel_create
from devices.models import AuditEntry
from tests.test_alerting_api import alert_make, builtin_rule, delivery_make

RULES = "/admin/analytics/alertrule/"
ALERTS = "/admin/analytics/alert/"
SILENCES = "/admin/analytics/silence/"
CHANNELS = "/admin/analytics/notificationchannel/"
DELIVERIES = "/admin/analytics/notificationdelivery/"


def browser_for(user: User) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def browser(operator: User) -> Client:
    return browser_for(operator)


@pytest.fixture
def metric_rule(site) -> AlertRule:  # noqa: ANN001
    return AlertRule.objects.create(
        name="CPU hot", metric="cpu_percent", condition="gt", threshold=90, for_seconds=300
    )


@pytest.fixture
def firing(metric_rule: AlertRule, agent) -> Alert:  # noqa: ANN001
    return alert_make(metric_rule, agent.device, severity="critical")


def html_of(response) -> str:  # noqa: ANN001
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def rule_form(**fields: object) -> dict:
    """The rule form as a browser posts it."""
    return {
        "name": "Hot lab",
        "source": "metric",
        "metric": "bme680.temperature",
        "condition": "gt",
        "threshold": "30",
        "for_seconds": "120",
        "severity": "critical",
        "site": "",
        "device_type": "",
        "device": "",
        "cooldown_seconds": "0",
        "repeat_seconds": "0",
        "auto_resolve": "on",
        "resolve_threshold": "",
        "enabled": "on",
        **fields,
    }


def channel_make(name: str = "hooks", **fields: object) -> tuple[NotificationChannel, str | None]:
    fields = {"kind": "webhook", "url": "http://127.0.0.1:9/hook", **fields}
    return notification_channel_create(actor=None, name=name, **fields)


def row(html: str, name: str) -> str:
    """The changelist row whose link reads `name`."""
    rows = [chunk for chunk in html.split("<tr") if f">{name}</a>" in chunk]
    assert len(rows) == 1, name
    return rows[0]


def action(browser: Client, url: str, name: str, alerts: list[Alert]):  # noqa: ANN201
    body = {"action": name, "_selected_action": [alert.pk for alert in alerts]}
    return browser.post(url, body, follow=True)


# --- Rules --------------------------------------------------------------------------------------


def test_the_rule_list_shows_condition_threshold_severity_and_scope(browser, metric_rule, site):
    AlertRule.objects.create(
        name="Lab silent", metric="bme680.iaq", condition="absent", for_seconds=600, site=site
    )

    html = html_of(browser.get(RULES))

    hot = row(html, "CPU hot")
    assert "cpu_percent &gt; 90 for 300 s" in hot and "every device" in hot
    assert 'data-severity="warning"' in hot
    silent = row(html, "Lab silent")
    assert "no bme680.iaq for 600 s" in silent and "site lab-1" in silent
    offline = row(html, "Device offline")
    assert "device offline" in offline and 'data-severity="critical"' in offline


def test_adding_a_rule_goes_through_the_service_and_is_audited(browser, site):
    channel, _ = channel_make()

    response = browser.post(
        f"{RULES}add/", rule_form(site=site.pk, channels=[channel.pk], resolve_threshold="28")
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    rule = AlertRule.objects.get(name="Hot lab")
    assert (rule.metric, rule.threshold, rule.resolve_threshold, rule.site) == (
        "bme680.temperature",
        30,
        28,
        site,
    )
    assert list(rule.channels.all()) == [channel]
    entry = AuditEntry.objects.get(action="alert_rule.create")
    assert entry.actor == "otto" and entry.data["channels"] == [channel.pk]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"resolve_threshold": "35"}, "resolves below this value: at most 30"),
        ({"condition": "absent", "for_seconds": "0"}, "needs for_seconds &gt; 0"),
        ({"metric": ""}, "needs the metric"),
        ({"metric": "bad name"}, "Invalid metric name"),
        ({"threshold": ""}, "needs a threshold"),
        ({"threshold": "nan"}, "Enter a number"),
        ({"threshold": "inf"}, "Enter a number"),
        ({"for_seconds": str(31 * 86400)}, "less than or equal to"),
    ],
)
def test_an_invalid_rule_is_refused_by_the_form_as_by_the_api(
    browser, site, fields: dict, message: str
):
    html = html_of(browser.post(f"{RULES}add/", rule_form(**fields)))

    assert "errornote" in html and message in html
    assert not AlertRule.objects.filter(name="Hot lab").exists()


def test_a_device_outside_the_site_is_refused_on_the_form(browser, other_site, agent):
    html = html_of(
        browser.post(f"{RULES}add/", rule_form(site=other_site.pk, device=agent.device.pk))
    )

    assert "pi-1 is not at site lab-2" in html


def test_changing_a_rule_is_audited_with_what_changed(browser, metric_rule):
    form = rule_form(
        name="CPU hot",
        metric="cpu_percent",
        threshold="95",
        for_seconds="300",
        severity="warning",
    )

    response = browser.post(f"{RULES}{metric_rule.pk}/change/", form)

    assert response.status_code == 302
    metric_rule.refresh_from_db()
    assert metric_rule.threshold == 95
    entry = AuditEntry.objects.get(action="alert_rule.change")
    assert entry.data["changed"] == {"threshold": 95.0}


def test_a_builtin_rule_keeps_its_source_can_be_disabled_and_not_deleted(browser):
    rule = builtin_rule()
    html = html_of(browser.get(f"{RULES}{rule.pk}/change/"))
    assert 'name="source"' not in html  # read-only
    assert "deletelink" not in html

    form = rule_form(name=rule.name, severity="info", metric="", threshold="", for_seconds="0")
    del form["enabled"]
    response = browser.post(f"{RULES}{rule.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[:2000]
    rule.refresh_from_db()
    assert (rule.enabled, rule.severity, rule.source) == (False, "info", "device_offline")
    assert browser.get(f"{RULES}{rule.pk}/delete/").status_code == 403


def test_deleting_selected_rules_is_audited_and_refused_with_a_builtin_one(browser, metric_rule):
    offline = builtin_rule()
    with_builtin = {"action": "delete_selected", "_selected_action": [metric_rule.pk, offline.pk]}
    custom_only = {"action": "delete_selected", "_selected_action": [metric_rule.pk]}

    confirm = html_of(browser.post(RULES, with_builtin))
    assert "Cannot delete alert rules" in confirm
    assert browser.post(RULES, {**with_builtin, "post": "yes"}).status_code == 403
    assert AlertRule.objects.filter(pk=metric_rule.pk).exists()

    browser.post(RULES, {**custom_only, "post": "yes"}, follow=True)

    assert not AlertRule.objects.filter(pk=metric_rule.pk).exists()
    assert AlertRule.objects.filter(pk=offline.pk).exists()
    assert AuditEntry.objects.filter(action="alert_rule.delete").count() == 1


def test_a_rule_with_open_alerts_offers_no_delete(browser, firing, metric_rule):
    html = html_of(browser.get(f"{RULES}{metric_rule.pk}/change/"))

    assert "deletelink" not in html
    assert browser.post(f"{RULES}{metric_rule.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AlertRule.objects.filter(pk=metric_rule.pk).exists()


# --- Alerts ---------------------------------------------------------------------------------------


def test_the_alert_list_filters_by_state_severity_rule_and_site(
    browser, firing, metric_rule, make_agent, other_site
):
    there = make_agent("pi-9", site_public_id="lab-2").device
    resolved = alert_make(metric_rule, there, state="resolved", severity="info")

    def rows(query: str) -> set[str]:
        html = html_of(browser.get(f"{ALERTS}?{query}"))
        return set(re.findall(r'name="_selected_action" value="(\d+)"', html))

    assert rows("") == {str(firing.pk), str(resolved.pk)}
    assert rows("state__exact=firing") == {str(firing.pk)}
    assert rows("severity__exact=info") == {str(resolved.pk)}
    assert rows(f"rule__id__exact={metric_rule.pk}") == {str(firing.pk), str(resolved.pk)}
    assert rows(f"device__site__id__exact={other_site.pk}") == {str(resolved.pk)}


def test_the_alert_actions_have_readable_labels(browser, firing):
    html = html_of(browser.get(ALERTS))

    assert "Acknowledge the selected alerts" in html
    assert "Resolve the selected alerts" in html
    assert "Silence for 24 hours (the alert&#x27;s rule on its device)" in html


def test_acknowledging_from_the_list(browser, firing, metric_rule, make_agent):
    other = alert_make(metric_rule, make_agent("pi-2").device)

    html = html_of(action(browser, ALERTS, "acknowledge", [firing, other]))

    assert "2 alert(s) acknowledged" in html
    assert set(Alert.objects.values_list("state", flat=True)) == {"acknowledged"}
    assert AuditEntry.objects.filter(action="alert.acknowledge", actor="otto").count() == 2


def test_resolving_from_the_list_reports_the_ones_already_resolved(
    browser, firing, metric_rule, make_agent
):
    done = alert_make(metric_rule, make_agent("pi-2").device, state="resolved")

    html = html_of(action(browser, ALERTS, "resolve", [firing, done]))

    assert "1 alert(s) resolved" in html and f"Alert {done.pk}: The alert is already" in html
    firing.refresh_from_db()
    assert (firing.state, firing.resolved_by.username) == ("resolved", "otto")


def test_silencing_from_the_list_makes_a_24_hour_silence_per_alert(browser, firing):
    html_of(action(browser, ALERTS, "silence", [firing]))

    silence = Silence.objects.get()
    assert (silence.device, silence.rule) == (firing.device, firing.rule)
    assert (
        timedelta(hours=23, minutes=59) < silence.ends_at - silence.starts_at <= timedelta(hours=24)
    )
    assert silence.created_by.username == "otto"


def test_the_alert_page_shows_its_events_deliveries_and_buttons(browser, firing):
    services.alert_acknowledge(alert=firing, actor=None, note="looking")
    firing.refresh_from_db()
    channel, _ = channel_make()
    delivery_make(channel, firing, status="failed", attempts=4, last_error="HTTP 503")

    html = html_of(browser.get(f"{ALERTS}{firing.pk}/change/"))

    assert "alert.acknowledged" in html and "looking" in html
    assert "HTTP 503" in html and "hooks" in html
    assert 'id="homepot-alert-resolve"' in html and 'id="homepot-alert-silence"' in html
    assert 'id="homepot-alert-acknowledge"' not in html  # acknowledged already
    assert 'name="_save"' not in html  # nothing to edit


def test_the_acknowledge_button_takes_a_note(browser, firing):
    url = f"{ALERTS}{firing.pk}/do/acknowledge/"

    response = browser.post(url, {"note": "fan replaced"})

    assert response.status_code == 302
    firing.refresh_from_db()
    assert (firing.state, firing.ack_note) == ("acknowledged", "fan replaced")
    assert browser.get(url).status_code == 405


def test_the_resolve_button_on_a_resolved_alert_says_why_not(browser, firing):
    browser.post(f"{ALERTS}{firing.pk}/do/resolve/")

    html = html_of(browser.post(f"{ALERTS}{firing.pk}/do/resolve/", follow=True))

    assert "Not done: The alert is already resolved." in html
    assert AuditEntry.objects.filter(action="alert.resolve").count() == 1


def test_viewers_see_alerts_without_buttons_or_actions(viewer, firing):
    browser = browser_for(viewer)

    page = html_of(browser.get(f"{ALERTS}{firing.pk}/change/"))
    listing = html_of(browser.get(ALERTS))

    assert "homepot-alert-resolve" not in page and "homepot-alert-silence" not in page
    assert "Acknowledge the selected alerts" not in listing
    assert browser.post(f"{ALERTS}{firing.pk}/do/resolve/").status_code == 403
    assert browser.post(f"{ALERTS}{firing.pk}/do/silence/").status_code == 403
    firing.refresh_from_db()
    assert firing.state == "firing" and not Silence.objects.exists()


@pytest.mark.parametrize("path", ["424242/do/resolve/", "1/do/explode/", "abc/do/resolve/"])
def test_buttons_on_unknown_alerts_or_actions_are_404(browser, firing, path: str):
    assert browser.post(f"{ALERTS}{path}").status_code == 404


# --- Silences -----------------------------------------------------------------------------------


def test_adding_a_silence_goes_through_the_service(browser, site):
    starts = timezone.now()
    form = {
        "site": site.pk,
        "device": "",
        "rule": "",
        "starts_at_0": starts.strftime("%Y-%m-%d"),
        "starts_at_1": starts.strftime("%H:%M:%S"),
        "ends_at_0": (starts + timedelta(days=1)).strftime("%Y-%m-%d"),
        "ends_at_1": starts.strftime("%H:%M:%S"),
        "reason": "power works",
    }

    response = browser.post(f"{SILENCES}add/", form)

    assert response.status_code == 302, response.content.decode()[:3000]
    silence = Silence.objects.get()
    assert (silence.site, silence.reason, silence.created_by.username) == (
        site,
        "power works",
        "otto",
    )
    assert AuditEntry.objects.filter(action="silence.create").exists()
    html = html_of(browser.get(SILENCES))
    assert "power works" in html and 'alt="True"' in html  # in force now


def test_deleting_a_silence_is_audited(browser, firing):
    silence = services.silence_from_alert(alert=firing, actor=None, hours=1, reason="x")

    response = browser.post(f"{SILENCES}{silence.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Silence.objects.exists()
    assert AuditEntry.objects.filter(action="silence.delete", actor="otto").exists()


# --- Channels and deliveries ---------------------------------------------------------------------


def test_adding_a_webhook_channel_shows_its_secret_once(browser, db):  # noqa: ANN001
    form = {
        "name": "lab",
        "kind": "webhook",
        "webhook_url": "http://receiver:9000/hook",
        "addresses": "",
        "min_severity": "warning",
        "enabled": "on",
    }

    response = browser.post(f"{CHANNELS}add/", form)

    html = html_of(response)
    channel = NotificationChannel.objects.get(name="lab")
    assert channel.secret.startswith("whsec_")
    assert f'<code class="homepot-secret">{channel.secret}</code>' in html
    assert "no-store" in response["Cache-Control"]
    for page in (CHANNELS, f"{CHANNELS}{channel.pk}/change/"):
        assert channel.secret not in html_of(browser.get(page))


def test_adding_an_email_channel_takes_addresses_one_per_line(browser, db):  # noqa: ANN001
    form = {
        "name": "on call",
        "kind": "email",
        "webhook_url": "",
        "addresses": "a@example.org\r\nb@example.org",
        "min_severity": "info",
        "enabled": "on",
    }

    response = browser.post(f"{CHANNELS}add/", form)

    assert response.status_code == 302, response.content.decode()[:3000]
    channel = NotificationChannel.objects.get(name="on call")
    assert channel.addresses == ["a@example.org", "b@example.org"] and channel.secret == ""


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "webhook", "webhook_url": "ftp://example.org/"}, "Only http and https"),
        ({"kind": "webhook", "webhook_url": ""}, "needs a URL"),
        ({"kind": "email", "addresses": "not-an-address"}, "valid email"),
        ({"kind": "email", "addresses": ""}, "At least one email address"),
    ],
)
def test_an_invalid_channel_is_refused_by_the_form(browser, db, fields: dict, message: str):  # noqa: ANN001
    form = {"name": "x", "webhook_url": "", "addresses": "", "min_severity": "info", **fields}

    html = html_of(browser.post(f"{CHANNELS}add/", form))

    assert message in html
    assert not NotificationChannel.objects.exists()


def test_send_test_reaches_a_real_receiver(browser, http_receiver):
    channel, _ = channel_make(url=http_receiver.url("/in"))
    page = html_of(browser.get(f"{CHANNELS}{channel.pk}/change/"))
    assert 'id="homepot-channel-test"' in page

    html = html_of(browser.post(f"{CHANNELS}{channel.pk}/send-test/", follow=True))

    delivery = NotificationDelivery.objects.get()
    assert (delivery.event_type, delivery.status) == ("test", "delivered")
    assert [r.path for r in http_receiver.requests] == ["/in"]
    assert f"{DELIVERIES}{delivery.pk}/change/" in html


def test_changing_a_channel_goes_through_the_service(browser, db):  # noqa: ANN001
    channel, secret = channel_make()
    form = {
        "name": "hooks",
        "webhook_url": "http://10.0.0.9/in",
        "addresses": "",
        "min_severity": "critical",
    }

    response = browser.post(f"{CHANNELS}{channel.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[:3000]
    channel.refresh_from_db()
    assert (channel.url, channel.min_severity, channel.enabled) == (
        "http://10.0.0.9/in",
        "critical",
        False,
    )
    assert channel.kind == "webhook" and channel.secret == secret
    changed = AuditEntry.objects.get(action="notification_channel.change").data["changed"]
    assert set(changed) == {"url", "min_severity", "enabled"}


def test_the_delivery_log_is_read_only_with_filters(browser, firing):
    channel, _ = channel_make()
    failed = delivery_make(channel, firing, status="failed", attempts=3, last_error="HTTP 503")
    delivered = delivery_make(channel, firing, status="delivered", event_type="alert.resolved")

    listing = html_of(browser.get(f"{DELIVERIES}?status__exact=failed"))
    detail = html_of(browser.get(f"{DELIVERIES}{failed.pk}/change/"))

    assert "HTTP 503" in listing and f"alert {firing.pk}" in listing
    assert f"{DELIVERIES}{delivered.pk}/change/" not in listing
    assert "alert.fired" in detail and 'name="_save"' not in detail
    assert browser.get(f"{DELIVERIES}add/").status_code == 403


# --- The device page -----------------------------------------------------------------------------


def test_the_device_page_shows_its_open_alerts(browser, firing, metric_rule, agent):
    resolved = alert_make(builtin_rule(), agent.device, state="resolved")

    html = html_of(browser.get(f"/admin/devices/device/{agent.device.pk}/change/"))

    panel = html.split('id="homepot-open-alerts"')[1].split("</fieldset>")[0]
    assert f'data-alert-id="{firing.pk}"' in panel and "CPU hot" in panel
    assert 'data-severity="critical"' in panel
    assert f'data-alert-id="{resolved.pk}"' not in panel
    assert f"{ALERTS}{firing.pk}/change/" in panel


def test_the_device_page_says_when_nothing_is_open(browser, agent):
    html = html_of(browser.get(f"/admin/devices/device/{agent.device.pk}/change/"))

    assert "No open alerts." in html.split('id="homepot-open-alerts"')[1]


def test_the_panel_needs_the_permission_to_see_alerts(firing, agent):
    user = User.objects.create_user("dora", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_device"))

    html = html_of(browser_for(user).get(f"/admin/devices/device/{agent.device.pk}/change/"))

    assert "homepot-open-alerts" not in html
