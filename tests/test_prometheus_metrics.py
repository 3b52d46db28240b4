"""GET /metrics: the Prometheus text format behind a bearer token, fleet gauges read
from the database, request and ingest counters, several processes summed."""

import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import redis
import requests
from django.db import connection
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from analytics.models import Alert, AlertRule
from devices.models import Device

TOKEN = "metrics-token-for-tests"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def scraper(db, settings) -> Client:  # noqa: ANN001
    settings.METRICS_BEARER_TOKEN = TOKEN
    return Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


def scrape(scraper: Client) -> dict[tuple[str, tuple], float]:
    """Every sample of the answer, keyed by name and sorted labels."""
    response = scraper.get("/metrics")
    assert response.status_code == 200, response.content[:300]
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_are_off_without_a_token(db, settings):
    settings.METRICS_BEARER_TOKEN = ""

    assert Client().get("/metrics").status_code == 404
    assert Client(HTTP_AUTHORIZATION="Bearer ").get("/metrics").status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Token {TOKEN}", f"Basic {TOKEN}", "Bearer", f"{TOKEN}"],
)
def test_metrics_need_the_bearer_token(db, settings, authorization):
    settings.METRICS_BEARER_TOKEN = TOKEN
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}

    response = Client(**headers).get("/metrics")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"homepot_" not in response.content


def test_the_answer_is_the_prometheus_text_format(scraper):
    response = scraper.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "no-store" in response["Cache-Control"]
    assert b"# TYPE homepot_devices gauge" in response.content


def test_devices_are_counted_by_status(scraper, make_agent):
    for n in range(3):
        make_agent(f"pi-{n}")
    Device.objects.filter(public_id="pi-0").update(status="online")
    Device.objects.filter(public_id="pi-1").update(status="offline")

    samples = scrape(scraper)

    assert samples[("homepot_devices", (("status", "online"),))] == 1
    assert samples[("homepot_devices", (("status", "offline"),))] == 1
    assert samples[("homepot_devices", (("status", "new"),))] == 1
    assert samples[("homepot_devices", (("status", "decommissioned"),))] == 0


def test_commands_are_counted_by_status(scraper, agent, enqueue):
    enqueue(agent)
    enqueue(agent)
    canceled = enqueue(agent)
    type(canceled).objects.filter(pk=canceled.pk).update(status="canceled")

    samples = scrape(scraper)

    assert samples[("homepot_commands", (("status", "queued"),))] == 2
    assert samples[("homepot_commands", (("status", "canceled"),))] == 1
    assert samples[("homepot_commands", (("status", "succeeded"),))] == 0


def test_firing_alerts_are_counted_by_severity(scraper, make_agent):
    rule = AlertRule.objects.create(name="hot", metric="cpu_percent", threshold=90)
    devices = [make_agent(f"pi-{n}").device for n in range(3)]
    now = timezone.now()
    Alert.objects.create(rule=rule, device=devices[0], severity="critical", fired_at=now)
    Alert.objects.create(rule=rule, device=devices[1], severity="warning", fired_at=now)
    Alert.objects.create(
        rule=rule, device=devices[2], severity="warning", state="acknowledged", fired_at=now
    )

    samples = scrape(scraper)

    assert samples[("homepot_alerts_firing", (("severity", "critical"),))] == 1
    assert samples[("homepot_alerts_firing", (("severity", "warning"),))] == 1
    assert samples[("homepot_alerts_firing", (("severity", "info"),))] == 0


def test_a_scrape_costs_the_same_queries_for_a_big_fleet(
    scraper, make_agent, django_assert_max_num_queries
):
    for n in range(30):
        make_agent(f"pi-{n}")

    # devices, commands, alerts: one aggregate query each
    with django_assert_max_num_queries(3):
        scraper.get("/metrics")


def test_requests_are_counted_and_timed_by_view_and_status_class(scraper):
    before = scrape(scraper)
    health = (("method", "GET"), ("status", "2xx"), ("view", "health"))
    missing = (("method", "GET"), ("status", "4xx"), ("view", "<unmatched>"))

    scraper.get("/health")
    scraper.get("/health")
    scraper.get("/no/such/page/1")
    scraper.get("/no/such/page/2")
    after = scrape(scraper)

    count = "homepot_http_requests_total"
    assert after[(count, health)] - before.get((count, health), 0) == 2
    assert after[(count, missing)] - before.get((count, missing), 0) == 2
    timed = ("homepot_http_request_duration_seconds_count", (("status", "2xx"), ("view", "health")))
    assert after[timed] - before.get(timed, 0) == 2


def test_ingested_samples_and_values_are_counted(
    scraper, agent, client, django_capture_on_commit_callbacks
):
    before = scrape(scraper)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/analytics/device-metrics",
            {"cpu_percent": 5.0, "memory_percent": 40.0, "disk_percent": 70.0},
            format="json",
            **agent.headers,
        )
    after = scrape(scraper)

    assert response.status_code == 201
    values = ("homepot_telemetry_values_ingested_total", ())
    samples = ("homepot_telemetry_samples_ingested_total", ())
    assert after[values] - before.get(values, 0) == 3
    assert after[samples] - before.get(samples, 0) == 1


def test_the_celery_queue_length_is_read_from_redis(scraper, settings):
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is not set")
    settings.REDIS_URL = url
    broker = redis.Redis.from_url(url)
    broker.delete("celery", "celery\x06\x163")
    broker.lpush("celery", "a", "b", "c")
    broker.lpush("celery\x06\x163", "d")
    try:
        samples = scrape(scraper)
    finally:
        broker.delete("celery", "celery\x06\x163")

    assert samples[("homepot_celery_queue_length", (("queue", "celery"),))] == 4


def test_without_redis_there_is_no_queue_length(scraper, settings):
    settings.REDIS_URL = ""

    samples = scrape(scraper)

    assert not [key for key in samples if key[0] == "homepot_celery_queue_length"]


def _count_in_another_process(directory: Path, samples: int, values: int) -> None:
    code = (
        "from homepot.metrics import ingest_counted\n"
        f"ingest_counted(samples={samples}, values={values})\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


def test_with_a_multiprocess_directory_the_counts_of_every_process_add_up(
    scraper, tmp_path, monkeypatch
):
    _count_in_another_process(tmp_path, samples=2, values=10)
    _count_in_another_process(tmp_path, samples=3, values=5)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    samples = scrape(scraper)

    assert samples[("homepot_telemetry_samples_ingested_total", ())] == 5
    assert samples[("homepot_telemetry_values_ingested_total", ())] == 15
    assert ("homepot_devices", (("status", "new"),)) in samples  # the fleet gauges still


def _gunicorn_start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "homepot.wsgi:application"]
    command += ["--workers=2", f"--bind=127.0.0.1:{port}", "--access-logfile=-"]
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
        )


def _wait_until_up(base: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/health", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


@pytest.mark.django_db(transaction=True)
def test_two_gunicorn_workers_answer_with_the_sum_of_both(tmp_path, free_tcp_port):
    if connection.vendor != "postgresql":
        pytest.skip("the server processes need the test database on PostgreSQL")
    database = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = os.environ | {
        "DATABASE_URL": database._replace(path=f"/{connection.settings_dict['NAME']}").geturl(),
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "METRICS_BEARER_TOKEN": TOKEN,
    }
    base, log = f"http://127.0.0.1:{free_tcp_port}", tmp_path / "gunicorn.log"
    server = _gunicorn_start(env, free_tcp_port, log)
    try:
        _wait_until_up(base, log)
        # Many requests on fresh connections: both workers answer some of them.
        for _ in range(40):
            requests.get(f"{base}/health", timeout=5)
        answers = [
            requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
            for _ in range(6)
        ]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    health = 'homepot_http_requests_total{method="GET",status="2xx",view="health"}'
    counts = set()
    for answer in answers:
        assert answer.status_code == 200
        line = next(line for line in answer.text.splitlines() if line.startswith(health))
        counts.add(float(line.split()[-1]))
    # Every scrape, whichever worker answered, counts all 40 (+ the start-up probes).
    assert min(counts) >= 40
    worker_files = {p.name.rsplit("_", 1)[-1] for p in directory.glob("counter_*.db")}
    assert len(worker_files) >= 2, worker_files  # both workers counted something


def test_requests_are_not_timed_while_metrics_are_off(settings):
    """Off, the middleware leaves the chain: agents' requests pay nothing for it."""
    from django.core.exceptions import MiddlewareNotUsed

    from homepot.metrics import RequestMetricsMiddleware

    settings.METRICS_BEARER_TOKEN = ""
    with pytest.raises(MiddlewareNotUsed):
        RequestMetricsMiddleware(lambda request: None)
    settings.METRICS_BEARER_TOKEN = TOKEN
    assert RequestMetricsMiddleware(lambda request: None).get_response is not None
