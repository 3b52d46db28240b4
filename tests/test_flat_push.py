"""The flat metrics push (HOMEPOT's payload) costs what a small batch costs, or less.

Issue 15: every HOMEPOT agent pushes this way, so its validation takes one
plain pass (analytics.serializers.flat_metrics_checked) and, on PostgreSQL, its
rows are stored in one statement. These tests hold the cost down and check the
fast path changes nothing that is accepted, stored or refused.
"""

import json
import math
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from analytics import services
from analytics.models import LatestValue, RollupBacklog, Sample
from analytics.serializers import FLAT_METRICS, FlatMetricsSerializer, flat_metrics_checked

URL = "/api/v1/analytics/device-metrics"
# What bench/flat_push.lua sends: six values, no timestamp.
PUSH = {
    "cpu_percent": 12.5,
    "memory_percent": 40.0,
    "disk_percent": 71.2,
    "network_latency_ms": 3.25,
    "active_connections": 7,
    "extra_metrics": {"temperature_c": 48.3},
}

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="one-statement ingest and its query count: PostgreSQL (CI sets DATABASE_URL)",
)


def post(client, agent, body: object) -> object:
    return client.post(URL, json.dumps(body), content_type="application/json", **agent.headers)


def small_batch(batch_id: str) -> dict:
    ts = (timezone.now() - timedelta(seconds=1)).isoformat()
    return {"batch_id": batch_id, "samples": [{"ts": ts, "metrics": PUSH["extra_metrics"]}]}


def queries_of(client, agent, body: dict) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert post(client, agent, body).status_code == 201
    return [q["sql"] for q in queries.captured_queries]


# --- Cost ---------------------------------------------------------------------------------


@pytest.fixture
def warm(client, agent, django_capture_on_commit_callbacks):
    """A first push, committed as in production: the key, the device's metric
    names and its last_seen are remembered after it."""

    def push(body: dict) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            assert post(client, agent, body).status_code == 201

    return push


@on_postgresql
def test_a_flat_push_is_one_query_and_no_more_than_a_small_batch(client, agent, warm):
    warm(PUSH)
    warm(small_batch("warm"))

    batch = queries_of(client, agent, small_batch("b-1"))
    flat = queries_of(client, agent, PUSH)

    assert len(flat) == 1, flat
    assert len(flat) <= len(batch)
    assert flat[0].startswith("WITH raw AS (INSERT INTO")
    assert Sample.objects.filter(device=agent.device).count() == 6 + 1 + 1 + 6


def test_a_flat_push_queries_nothing_but_its_rows(client, agent, warm):
    warm(PUSH)

    flat = queries_of(client, agent, PUSH)

    # SQLite has no INSERT inside WITH: the two inserts in one transaction
    writes = [sql for sql in flat if sql.startswith(("INSERT", "WITH"))]
    assert len(writes) == (1 if connection.vendor == "postgresql" else 2), flat
    assert not [sql for sql in flat if sql.startswith("SELECT")], flat


def test_an_ordinary_payload_never_builds_the_serializers_fields():
    serializer = FlatMetricsSerializer(
        data={**PUSH, "device_id": "pi-1", "timestamp": timezone.now().timestamp()}
    )

    assert serializer.is_valid(), serializer.errors
    # DRF deep-copies every declared field the first time .fields is read
    assert "fields" not in serializer.__dict__
    assert serializer.validated_data["public_id"] == "pi-1"


# --- Same data stored ---------------------------------------------------------------------


def test_a_flat_push_stores_every_value_and_the_latest(client, agent):
    response = post(client, agent, {**PUSH, "network_latency_ms": None, "device_id": "pi-1"})

    assert response.status_code == 201
    assert response.json() == {"batch_id": None, "samples": 1, "values": 5, "duplicate": False}
    rows = dict(Sample.objects.filter(device=agent.device).values_list("metric__name", "value"))
    assert rows == {
        "cpu_percent": 12.5,
        "memory_percent": 40.0,
        "disk_percent": 71.2,
        "active_connections": 7.0,
        "temperature_c": 48.3,
    }
    latest = LatestValue.objects.filter(device=agent.device)
    assert dict(latest.values_list("metric__name", "value")) == rows


def test_a_repeated_push_at_the_same_timestamp_is_stored_once(client, agent):
    body = {**PUSH, "timestamp": (timezone.now() - timedelta(seconds=5)).isoformat()}

    assert post(client, agent, body).status_code == 201
    assert post(client, agent, {**body, "cpu_percent": 99.0}).status_code == 201

    assert Sample.objects.filter(device=agent.device).count() == 6
    cpu = Sample.objects.get(device=agent.device, metric__name="cpu_percent")
    assert cpu.value == 12.5  # the first value stays, in raw rows and latest values
    assert LatestValue.objects.get(device=agent.device, metric__name="cpu_percent").value == 12.5


def test_an_older_push_leaves_the_latest_values_alone(client, agent):
    now = timezone.now()
    post(client, agent, {"cpu_percent": 2.0, "timestamp": now.isoformat()})
    post(
        client, agent, {"cpu_percent": 1.0, "timestamp": (now - timedelta(seconds=30)).isoformat()}
    )

    assert LatestValue.objects.get(device=agent.device).value == 2.0
    assert Sample.objects.filter(device=agent.device).count() == 2


def test_a_late_flat_push_is_noted_for_the_rollups(client, agent, settings):
    settings.TELEMETRY_ROLLUP_LOOKBACK_SECONDS = 60
    late = timezone.now() - timedelta(minutes=10)

    assert post(client, agent, {**PUSH, "timestamp": late.isoformat()}).status_code == 201

    backlog = RollupBacklog.objects.get(device_id=agent.device.pk)
    assert backlog.start == backlog.end == late
    assert Sample.objects.filter(device=agent.device).count() == 6


@on_postgresql
def test_raw_rows_and_latest_values_are_stored_together_or_not_at_all(agent):
    # A check only this test adds makes the latest-value half of the statement fail.
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE analytics_latestvalue ADD CONSTRAINT test_small CHECK (value < 1000)"
        )
    metrics = {"cpu_percent": 5.0, "fan_rpm": 2000.0}

    with pytest.raises(IntegrityError), transaction.atomic():
        services.check_metrics_store(agent.device, timezone.now(), metrics)

    assert not Sample.objects.filter(device=agent.device).exists()
    assert not LatestValue.objects.filter(device=agent.device).exists()


# --- Same answers: the fast check only ever agrees with the fields -----------------------


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """good values about 9 times in 10: most payloads are accepted, some for one field only."""
    # (one_of picks each strategy alike, however often it is given)
    return st.sampled_from(range(10)).flatmap(lambda n: bad if n == 9 else good)


good_numbers = st.one_of(st.floats(min_value=-1e15, max_value=1e15), st.integers(-(10**15), 10**15))
numbers = mostly(good_numbers, st.sampled_from([math.nan, math.inf, 1e15 + 1, 2**63 - 1]))
odd = st.one_of(st.none(), st.booleans(), st.sampled_from(["12.5", "", [1.0], {"a": 1}]))
device_ids = mostly(
    st.from_regex(r"\A[a-z0-9._-]{1,64}\Z"),
    st.one_of(
        st.text(max_size=70),
        st.sampled_from([" pi-1", "pi-1 ", "pi\t1", "x" * 65, "\u3000pi", "pi\x00", "pi\ud800"]),
        st.integers(),
        st.floats(),
        odd,
    ),
)
timestamps = mostly(
    st.integers(min_value=-300, max_value=10**6).map(
        lambda seconds: (timezone.now() - timedelta(seconds=seconds)).isoformat()
    ),
    st.one_of(
        st.floats(min_value=0, max_value=4e9),
        st.sampled_from(["2020-01-01T00:00:00", "not a time", "9999-12-31T00:00:00+00:00"]),
        odd,
    ),
)
metric_names = mostly(
    st.from_regex(r"\A[a-z_][a-z0-9_.:-]{0,20}\Z"),
    st.one_of(st.sampled_from(["1bad", "a" * 101, "cpu_percent", "t\n"]), st.text(max_size=8)),
)
# Mostly payloads the fields accept, now and then one odd field (or an unknown
# one): the fast check must agree with the fields wherever it answers at all.
fields = {
    "device_id": device_ids,
    "timestamp": timestamps,
    "extra_metrics": mostly(st.dictionaries(metric_names, numbers, max_size=4), odd),
    **{name: mostly(numbers, odd) for name in FLAT_METRICS},
}
payloads = mostly(
    st.fixed_dictionaries({}, optional=fields),
    st.fixed_dictionaries({}, optional={**fields, "samples": st.just([]), "cpu": numbers}),
)


def fields_answer(data: object) -> tuple[bool, object]:
    """What the declared fields say, the fast check bypassed."""
    serializer = FlatMetricsSerializer(data=data)
    try:
        return True, super(FlatMetricsSerializer, serializer).run_validation(data)
    except serializers.ValidationError as exc:
        return False, exc.detail


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=mostly(payloads, st.one_of(odd, st.lists(numbers, max_size=2))))
def test_the_fast_check_accepts_only_what_the_fields_accept_with_the_same_values(data):
    checked = flat_metrics_checked(data)
    event("fast" if checked is not None else "fields")
    if checked is None:
        return  # the fields decide, with their own messages
    accepted, answer = fields_answer(data)
    assert accepted, answer
    assert same(checked, dict(answer)), (checked, answer)


@pytest.mark.parametrize(
    "make_body",
    [
        lambda: PUSH,
        lambda: {},
        lambda: {**PUSH, "device_id": "pi-1", "timestamp": timezone.now().isoformat()},
        lambda: {"network_latency_ms": None, "extra_metrics": {}},
        lambda: {"timestamp": timezone.now().timestamp() - 60, "cpu_percent": -3},
    ],
)
def test_ordinary_payloads_take_the_fast_check(make_body):
    body = make_body()

    checked = flat_metrics_checked(body)

    assert checked is not None
    accepted, answer = fields_answer(body)
    assert accepted and same(checked, dict(answer))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("device_id", value)
        for value in [" pi-1", "pi-1 ", "pi\t1", "pi\x00", "pi\ud800", "\u3000pi", "", " "]
        + ["x" * 64, "x" * 65, 12, 1.5, True, None, ["pi-1"]]
    ]
    + [
        (field, value)
        for field in ("cpu_percent", "network_latency_ms")
        for value in [None, True, "1", math.nan, -math.inf, 1e15, 1e15 + 1, 2**63 - 1, [1.0]]
    ]
    + [
        ("timestamp", value)
        for value in [None, "2020-01-01T00:00:00", "yesterday", math.nan, 1e20, True, "9999-12-31"]
    ]
    + [
        ("extra_metrics", value)
        for value in [None, {}, {"t\n": 1.0}, {"1t": 1.0}, {"t": None}, {"t": "1"}, [1.0]]
    ],
)
def test_the_fast_check_agrees_with_the_fields_on_edge_values(field, value):
    body = {"memory_percent": 1.0, field: value}

    checked = flat_metrics_checked(body)
    accepted, answer = fields_answer(body)

    if checked is not None:
        assert accepted and same(checked, dict(answer)), (checked, answer)
