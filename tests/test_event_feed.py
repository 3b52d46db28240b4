"""GET /api/v1/events: the feed integrations poll with the `next` cursor.

The feed holds an event back until every transaction that was writing when it
was written has ended, and other test runs may share this PostgreSQL server: so
these tests commit their events (transactional tests) and read until what they
wrote arrives, with a deadline, instead of expecting it on the first read.
"""

import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from analytics.models import Alert, AlertRule
from devices.events import event_build, event_record, events_record
from devices.models import Event

FEED = "/api/v1/events"
WAIT_SECONDS = 60  # for transactions of other test runs on the same server to end

pytestmark = pytest.mark.django_db(transaction=True)


def _read(client: APIClient, **params: object) -> dict:
    response = client.get(FEED, params)
    assert response.status_code == 200, response.content
    return response.json()


def _read_until(
    client: APIClient, count: int, after: str = "0.0", **params: object
) -> tuple[list[dict], str]:
    """Follow `next` until `count` events arrived; returns them and the last cursor."""
    events: list[dict] = []
    deadline = time.monotonic() + WAIT_SECONDS
    while len(events) < count:
        page = _read(client, after=after, **params)
        events += page["results"]
        after = page["next"]
        if not page["results"]:
            assert time.monotonic() < deadline, f"only {len(events)} of {count} arrived"
            time.sleep(0.02)
    return events, after


@pytest.fixture
def reader(as_user: Callable, viewer) -> APIClient:  # noqa: ANN001
    return as_user(viewer)


def test_events_come_oldest_first_with_their_device_site_command_and_alert(
    reader, make_agent, enqueue
):
    agent = make_agent("pi-feed")
    command = enqueue(agent)
    rule = AlertRule.objects.create(name="hot", metric="cpu.temp", threshold=80)
    alert = Alert.objects.create(
        rule=rule, device=agent.device, severity="warning", fired_at=timezone.now()
    )
    fired = event_build(kind="alert.fired", device=agent.device, message="hot", data={"value": 81})
    fired.alert = alert
    events_record([fired])
    event_record(kind="device.offline", device=None, message="no device")

    events, _ = _read_until(reader, 4)

    assert [e["kind"] for e in events] == [
        "device.registered",
        "command.queued",
        "alert.fired",
        "device.offline",
    ]
    registered, queued, alert_fired, deviceless = events
    assert registered["device"] == "pi-feed" and registered["site"] == "lab-1"
    assert queued["command"] == str(command.public_id)
    assert alert_fired == {
        "id": fired.pk,
        "kind": "alert.fired",
        "message": "hot",
        "device": "pi-feed",
        "site": "lab-1",
        "command": None,
        "alert": alert.pk,
        "data": {"value": 81},
        "created_at": alert_fired["created_at"],
    }
    assert deviceless["device"] is None and deviceless["site"] is None


def test_following_next_reads_every_event_once_across_pages(reader, agent):
    for n in range(7):
        event_record(kind="device.online", device=agent.device, n=n)

    events, last = _read_until(reader, 8, page_size=3)
    again = _read(reader, after=last)

    assert [e["data"].get("n") for e in events] == [None, 0, 1, 2, 3, 4, 5, 6]
    assert len({e["id"] for e in events}) == 8
    assert again["results"] == []
    assert _cursor(again["next"]) >= _cursor(last)  # never back


def test_a_full_page_ends_its_next_at_its_last_event(reader, agent):
    for _ in range(3):
        event_record(kind="device.online", device=agent.device)
    _read_until(reader, 4)  # all four are final now

    page = _read(reader, page_size=2)

    assert len(page["results"]) == 2
    second = Event.objects.get(pk=page["results"][1]["id"])
    assert page["next"] == f"{second.txid}.{second.pk}"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers: PostgreSQL")
def test_an_event_whose_transaction_commits_late_is_not_skipped(reader, agent):
    _, start = _read_until(reader, 1)  # past device.registered
    written, release = threading.Event(), threading.Event()

    def write_and_hold() -> None:
        try:
            with transaction.atomic():
                event_record(kind="device.offline", device=agent.device, order="first")
                written.set()
                release.wait(WAIT_SECONDS)
        finally:
            connections.close_all()

    holder = threading.Thread(target=write_and_hold)
    holder.start()
    try:
        assert written.wait(WAIT_SECONDS)
        later = event_record(kind="device.online", device=agent.device, order="second")
        while_open = _read(reader, after=start)
    finally:
        release.set()
        holder.join()

    events, _ = _read_until(reader, 2, after=while_open["next"])

    assert while_open["results"] == []  # the later event waits for the earlier one
    assert [e["data"]["order"] for e in events] == ["first", "second"]
    assert events[0]["id"] < later.pk  # the id came first, the commit last


def test_kind_filter_takes_kinds_and_families_comma_separated(reader, agent, enqueue):
    enqueue(agent)
    event_record(kind="device.offline", device=agent.device)
    event_record(kind="ssh.check_failed", device=agent.device)
    _read_until(reader, 4)

    both = _read(reader, kind="device.offline,command.*")["results"]
    ssh = _read(reader, kind="ssh.check_failed")["results"]

    assert [e["kind"] for e in both] == ["command.queued", "device.offline"]
    assert [e["kind"] for e in ssh] == ["ssh.check_failed"]


def test_device_and_site_filters_take_public_ids(reader, make_agent, other_site):
    make_agent("pi-a")
    make_agent("pi-b", site_public_id="lab-2")
    _read_until(reader, 2)

    by_device = _read(reader, device="pi-b")["results"]
    by_site = _read(reader, site="lab-1")["results"]

    assert [(e["kind"], e["device"]) for e in by_device] == [("device.registered", "pi-b")]
    assert [(e["kind"], e["device"]) for e in by_site] == [("device.registered", "pi-a")]


def test_a_short_filtered_page_moves_next_past_what_did_not_match(reader, agent):
    for _ in range(5):
        event_record(kind="device.online", device=agent.device)
    _, end = _read_until(reader, 6)

    page = _read(reader, kind="device.offline")

    assert page["results"] == []
    assert _cursor(page["next"]) >= _cursor(end)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after": "42"}, "after"),
        ({"after": "a.b"}, "after"),
        ({"after": "1.99999999999999999999"}, "after"),
        ({"after": "99999999999999999999.1"}, "after"),
        ({"kind": "device.online,device.exploded"}, "kind"),
        ({"kind": "nope.*"}, "kind"),
        ({"page_size": 501}, "page_size"),
        ({"page_size": 0}, "page_size"),
    ],
)
def test_it_rejects_a_bad_query_naming_the_field(reader, params, field):
    response = reader.get(FEED, params)

    assert response.status_code == 400
    assert list(response.json()) == [field]


@pytest.mark.parametrize("param", ["device", "site"])
def test_an_unknown_device_or_site_is_404(reader, param):
    response = reader.get(FEED, {param: "nowhere"})

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_only_users_who_may_view_events_read_the_feed(client, django_user_model):
    nobody = django_user_model.objects.create_user("nobody", password="pw")

    assert client.get(FEED).status_code == 401
    client.force_authenticate(nobody)
    assert client.get(FEED).status_code == 403


def test_a_page_costs_the_same_queries_for_many_events_as_for_one(reader, make_agent, enqueue):
    make_agent("pi-1")
    _read_until(reader, 1)
    with CaptureQueriesContext(connection) as one:
        _read(reader)
    for n in range(2, 12):
        enqueue(make_agent(f"pi-{n}"))
    _read_until(reader, 21)

    with CaptureQueriesContext(connection) as many:
        page = _read(reader)

    assert len(page["results"]) == 21
    assert len(many) == len(one)


def _cursor(text: str) -> tuple[int, int]:
    txid, id_ = text.split(".")
    return int(txid), int(id_)
