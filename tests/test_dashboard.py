"""The fleet dashboard at /admin/ and its poll (homepot/dashboard.py, dashboard_views.py)."""

import re
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics.models import Alert, AlertRule, LatestValue, MetricName, RollupMinute
from commands.models import Command
from devices.events import event_record
from devices.models import Device, Site
from homepot import dashboard

POLL = "/admin/dashboard/poll"


def _page(client, user: User, query: str = ""):  # noqa: ANN001, ANN202
    client.force_login(user)
    response = client.get(f"/admin/{query}")
    assert response.status_code == 200
    return response


def _devices(site: Site, count: int, prefix: str = "d", **fields: object) -> list[Device]:
    return Device.objects.bulk_create(
        Device(public_id=f"{prefix}-{n}", name=f"{prefix}-{n}", site=site, **fields)
        for n in range(count)
    )


def _alert(device: Device, severity: str, state: str = "firing") -> Alert:
    rule = AlertRule.objects.create(name=f"r-{severity}-{device.pk}", metric="cpu_percent")
    return Alert.objects.create(
        rule=rule, device=device, severity=severity, state=state, fired_at=timezone.now()
    )


def _api_count(client, user: User, path: str) -> int:  # noqa: ANN001
    client.force_authenticate(user)
    response = client.get(path)
    assert response.status_code == 200, response.content
    return response.json()["count"]


@pytest.mark.django_db
def test_anonymous_is_sent_to_the_admin_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert client.get(POLL).status_code == 302


@pytest.mark.django_db
def test_cards_equal_the_apis_counts(client, admin_user, site, make_agent, enqueue):
    _devices(site, 3, "on", status=Device.Status.ONLINE, last_seen=timezone.now())
    offline = _devices(site, 2, "off", status=Device.Status.OFFLINE)
    _devices(site, 4, "new")
    _devices(site, 1, "gone", status="decommissioned", decommissioned_at=timezone.now())
    _alert(offline[0], "critical")
    _alert(offline[1], "warning", state="acknowledged")
    _alert(offline[1], "info", state="resolved")
    agent = make_agent("pi-cmd")
    queued, failed, done = enqueue(agent), enqueue(agent), enqueue(agent)
    Command.objects.filter(pk=failed.pk).update(status="failed", finished_at=timezone.now())
    Command.objects.filter(pk=done.pk).update(status="succeeded", finished_at=timezone.now())

    cards = _page(client, admin_user).context["cards"]

    api = {
        status: _api_count(client, admin_user, f"/api/v1/devices?status={status}")
        for status in ("online", "offline", "new")
    }
    assert cards["devices"] == {
        "total": api["online"] + api["offline"] + api["new"],  # decommissioned not counted
        "online": api["online"],
        "offline": api["offline"],
        "never_seen": api["new"],
    }
    assert cards["devices"]["never_seen"] == 5  # four plus the agent registered by operator
    assert cards["alerts"] == {
        severity: _api_count(client, admin_user, f"/api/v1/alerts?state=open&severity={severity}")
        for severity in ("critical", "warning", "info")
    }
    assert cards["alerts"] == {"critical": 1, "warning": 1, "info": 0}
    assert cards["commands"] == {
        "in_flight": _api_count(
            client, admin_user, "/api/v1/devices/pi-cmd/commands?status=queued"
        ),
        "failed_24h": _api_count(
            client, admin_user, "/api/v1/devices/pi-cmd/commands?status=failed"
        ),
    }
    assert queued.status == "queued" and cards["commands"]["in_flight"] == 1


@pytest.mark.django_db
def test_the_grid_filters_by_site_type_and_status(client, viewer, site, other_site):
    _devices(site, 2, "pi", device_type="raspberry_pi", status="online")
    _devices(site, 1, "pos", device_type="pos_terminal", status="offline")
    _devices(other_site, 3, "lab", device_type="lab_monitor", status="online")

    def shown(query: str) -> set[str]:
        html = _page(client, viewer, query).content.decode()
        return set(re.findall(r'data-device="([^"]+)"', html))

    assert shown("") == {"pi-0", "pi-1", "pos-0", "lab-0", "lab-1", "lab-2"}
    assert shown("?site=lab-2") == {"lab-0", "lab-1", "lab-2"}
    assert shown("?type=pos_terminal") == {"pos-0"}
    assert shown("?status=online&site=lab-1") == {"pi-0", "pi-1"}
    assert shown("?status=bogus&type=pos_terminal") == {"pos-0"}  # a bad status is ignored


@pytest.mark.django_db
def test_the_grid_pages_a_large_fleet(client, viewer, site, settings):
    settings.DASHBOARD_PAGE_SIZE = 10
    _devices(site, 25)
    html = _page(client, viewer, "?page=3").content.decode()
    assert len(re.findall(r'data-device="', html)) == 5
    assert "page 3 of 3" in html
    assert 'href="?page=2"' in html


def _fleet_with_metrics(site: Site, count: int, prefix: str) -> None:
    now = timezone.now()
    devices = _devices(site, count, prefix, status="online", last_seen=now)
    cpu, _ = MetricName.objects.get_or_create(name="cpu_percent")
    LatestValue.objects.bulk_create(
        LatestValue(device=device, metric=cpu, ts=now, value=12.5) for device in devices
    )
    RollupMinute.objects.bulk_create(
        RollupMinute(
            device=device,
            metric=cpu,
            bucket=now - timedelta(minutes=minute),
            min=1,
            max=3,
            sum=minute * 2.0,
            count=2,
        )
        for device in devices
        for minute in range(1, 6)
    )
    for device in devices[:3]:
        _alert(device, "warning")
        event_record(kind="device.online", device=device)


def _queries(client, user: User) -> int:  # noqa: ANN001
    client.force_login(user)
    client.get("/admin/")  # warm the session and the content types
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/admin/").status_code == 200
    return len(queries)


@pytest.mark.django_db
def test_the_page_costs_the_same_queries_for_5_and_100_devices(client, admin_user, site):
    _fleet_with_metrics(site, 5, "small")
    small = _queries(client, admin_user)
    _fleet_with_metrics(site, 95, "large")
    assert _queries(client, admin_user) == small
    html = client.get("/admin/").content.decode()
    assert html.count('class="sparkline"') == 100
    assert "1 open alert" in html


@pytest.mark.django_db
def test_a_user_without_view_command_gets_no_command_card(client, site):
    user = User.objects.create_user("device-reader", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_device"]))
    _devices(site, 1)
    response = _page(client, user)
    html = response.content.decode()
    assert "commands in flight" not in html
    assert "open alerts" not in html
    assert "values/s ingested" not in html
    assert 'id="dashboard-feed"' not in html
    assert "commands" not in response.context["cards"]
    assert 'data-device="d-0"' in html


@pytest.mark.django_db
def test_a_viewer_sees_every_card(client, viewer):
    html = _page(client, viewer).content.decode()
    for label in ("commands in flight", "open alerts", "values/s ingested", "Recent events"):
        assert label in html


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.mark.django_db
def test_the_page_loads_only_same_origin_assets(client, admin_user, site):
    _fleet_with_metrics(site, 3, "pi")
    response = _page(client, admin_user)
    parser = _Links()
    parser.feed(response.content.decode())
    assert any(url.endswith("homepot/dashboard.js") for url in parser.urls)
    assert any(url.endswith("homepot/dashboard.css") for url in parser.urls)
    foreign = [url for url in parser.urls if urlsplit(url).netloc not in ("", "testserver")]
    assert foreign == []
    assert "<script>" not in response.content.decode()  # the CSP blocks inline script
    assert client.get("/static/homepot/dashboard.js").status_code == 200


# --- The poll: committed events (the feed serves only finished transactions) --------------


def _poll(client, page_response, **params: str):  # noqa: ANN001, ANN202
    root = re.search(
        r'data-fingerprint="([^"]+)" data-cursor="([^"]+)"', page_response.content.decode()
    )
    query = {"fp": root[1], "cursor": root[2], **params}
    return client.get(POLL, query)


@pytest.mark.django_db(transaction=True)
def test_the_poll_says_nothing_changed_until_an_event(client, operator, make_agent, enqueue):
    agent = make_agent("pi-7")
    Device.objects.filter(pk=agent.device.pk).update(status="online", last_seen=timezone.now())
    command = enqueue(agent)
    page = _page(client, operator)
    assert _poll(client, page).status_code == 204

    Device.objects.filter(pk=agent.device.pk).update(status="offline")
    event_record(kind="device.offline", device=agent.device, message="missed its check-in")
    event_record(kind="command.succeeded", device=agent.device, command=command)
    cache.delete(dashboard.FINGERPRINT_KEY)  # as a second later
    answer = _poll(client, page)

    assert answer.status_code == 200
    body = answer.json()
    assert [toast["kind"] for toast in body["toasts"]] == ["device.offline", "command.succeeded"]
    assert body["toasts"][0]["text"] == "pi-7: missed its check-in"
    assert (
        '<span class="card-value">1</span><span class="card-label">offline'
        in (body["html"]["cards"])
    )
    assert 'data-status="offline"' in body["html"]["grid"]
    assert "device.offline" in body["html"]["feed"]
    again = client.get(POLL, {"fp": body["fingerprint"], "cursor": body["cursor"]})
    assert again.status_code == 204


@pytest.mark.django_db(transaction=True)
def test_toasts_leave_out_other_users_commands(client, viewer, agent, enqueue):
    command = enqueue(agent)  # queued by the operator, not the viewer
    page = _page(client, viewer)
    event_record(kind="command.succeeded", device=agent.device, command=command)
    event_record(kind="device.online", device=agent.device)
    cache.delete(dashboard.FINGERPRINT_KEY)
    body = _poll(client, page).json()
    assert [toast["kind"] for toast in body["toasts"]] == ["device.online"]


@pytest.mark.django_db
def test_the_fingerprint_moves_with_the_refresh_period(settings):
    settings.DASHBOARD_REFRESH_SECONDS = 30
    assert dashboard.dashboard_fingerprint(now=60.0) == dashboard.dashboard_fingerprint(now=89.0)
    assert dashboard.dashboard_fingerprint(now=60.0) != dashboard.dashboard_fingerprint(now=90.0)


def test_relative_times_read_as_people_say_them():
    now = timezone.now()
    assert dashboard.ago(now - timedelta(seconds=12), now) == "12 s ago"
    assert dashboard.ago(now - timedelta(minutes=5, seconds=3), now) == "5 min ago"
    assert dashboard.ago(now - timedelta(hours=3), now) == "3 h ago"
    assert dashboard.ago(now - timedelta(days=2), now) == "2 d ago"


def test_the_states_the_dashboard_counts_are_the_models():
    from analytics.models import Alert, Severity
    from commands.models import TERMINAL, Status

    assert set(dashboard.IN_FLIGHT) == set(Status.values) - TERMINAL
    assert set(dashboard.FAILED) < TERMINAL
    assert set(dashboard.OPEN_ALERT) == set(Alert.OPEN_STATES)
    assert set(dashboard.SEVERITIES) == set(Severity.values)
    assert set(dashboard.DEVICE_STATUSES) == set(Device.Status.values)
