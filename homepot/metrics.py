"""GET /metrics for Prometheus (prometheus-client), off unless METRICS_BEARER_TOKEN is set.

Two kinds of figures, so several gunicorn workers answer alike:

- Fleet gauges (devices by status, commands by status, alerts firing by
  severity, Celery queue depth) are read at scrape time with a few aggregate
  queries and one Redis pipeline: every worker reads the same database.
- Counters and histograms (HTTP requests by view and status class, samples and
  values ingested) are counted in the process that did the work. With several
  processes, set PROMETHEUS_MULTIPROC_DIR to an empty directory shared by the
  web and worker processes of one machine (emptied when they start): the client
  then keeps its values in files there and every scrape sums all processes.
  Without it (one process, the embedded default) the counters live in memory.

The project package reaches the apps' models by label (apps.get_model), never
by import (tests/test_import_graph.py).
"""

import hmac
import logging
import os
import time
from collections.abc import Callable, Iterator

from django.apps import apps
from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.db.models import Count, Model
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

# --- counted where the work happens (per process, or summed over PROMETHEUS_MULTIPROC_DIR) ---
HTTP_REQUESTS = Counter(
    "homepot_http_requests_total",
    "HTTP requests answered, by view name, method and status class (2xx, 4xx, ...).",
    ["view", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "homepot_http_request_duration_seconds",
    "Time to answer an HTTP request, by view name and status class.",
    ["view", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
SAMPLES_INGESTED = Counter(
    "homepot_telemetry_samples_ingested_total",
    "Telemetry samples stored (a sample: one timestamp with its metrics).",
)
VALUES_INGESTED = Counter(
    "homepot_telemetry_values_ingested_total",
    "Telemetry values stored (one metric of one sample).",
)

# kombu's Redis transport keeps a queue's priority levels in separate lists:
# the name itself, then the name + "\x06\x16" + the level (3, 6, 9 by default).
CELERY_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
CELERY_DEFAULT_QUEUE = "celery"


def ingest_counted(*, samples: int, values: int) -> None:
    """Called by the ingest service once its transaction has committed."""
    SAMPLES_INGESTED.inc(samples)
    VALUES_INGESTED.inc(values)


# --- read from the database (and Redis) at scrape time --------------------------------------


def _model(label: str) -> type[Model]:
    return apps.get_model(label)


def _counts_by(model: type[Model], field: str, **filters: object) -> dict[str, int]:
    """Rows per value of `field`: every choice appears, 0 when none (one query)."""
    counts = dict.fromkeys((value for value, _ in model._meta.get_field(field).choices), 0)
    rows = model.objects.filter(**filters).values_list(field).annotate(n=Count("pk")).order_by()
    counts.update(dict(rows))
    return counts


def _gauge(name: str, documentation: str, label: str, counts: dict[str, int]) -> Metric:
    gauge = GaugeMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        gauge.add_metric([value], count)
    return gauge


def celery_queue_depth(redis_url: str, queue: str = CELERY_DEFAULT_QUEUE) -> int:
    """Messages waiting in the broker's queue (all its priority levels)."""
    import redis  # only when Redis is the broker

    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        pipe = client.pipeline(transaction=False)
        for suffix in CELERY_PRIORITY_SUFFIXES:
            pipe.llen(queue + suffix)
        return sum(pipe.execute())
    finally:
        client.close()


class FleetCollector:
    """Gauges read at scrape time: the same answer from every worker."""

    def describe(self) -> list[Metric]:
        return []  # not known before the first collect; no name clashes to check

    def collect(self) -> Iterator[Metric]:
        yield _gauge(
            "homepot_devices",
            "Devices by status.",
            "status",
            _counts_by(_model("devices.Device"), "status"),
        )
        yield _gauge(
            "homepot_commands",
            "Commands by status (retained history included).",
            "status",
            _counts_by(_model("commands.Command"), "status"),
        )
        yield _gauge(
            "homepot_alerts_firing",
            "Alerts firing (not acknowledged, not resolved) by severity.",
            "severity",
            _counts_by(_model("analytics.Alert"), "severity", state="firing"),
        )
        yield from self._queue_depth()

    def _queue_depth(self) -> Iterator[Metric]:
        if not settings.REDIS_URL:
            return  # the embedded file broker: no queue length to read
        try:
            depth = celery_queue_depth(settings.REDIS_URL)
        except Exception:  # noqa: BLE001 (a scrape must still answer when Redis is down)
            logger.warning("metrics: cannot read the Celery queue length", exc_info=True)
            return
        gauge = GaugeMetricFamily(
            "homepot_celery_queue_length",
            "Tasks waiting in the Celery broker's queue.",
            labels=["queue"],
        )
        gauge.add_metric([CELERY_DEFAULT_QUEUE], depth)
        yield gauge


FLEET_REGISTRY = CollectorRegistry(auto_describe=False)
FLEET_REGISTRY.register(FleetCollector())


def _process_registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # sums the files of every process
        return registry
    return REGISTRY


# --- the view and the middleware -----------------------------------------------------------


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_BEARER_TOKEN
    if not token:
        raise Http404("Metrics are off (METRICS_BEARER_TOKEN is not set).")
    if not _authorized(request, token):
        response = HttpResponse("A bearer token is required.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body = generate_latest(_process_registry()) + generate_latest(FLEET_REGISTRY)
    # The classic text format: every Prometheus (2.x and 3.x) reads it, and our
    # metric names need none of the newer format's escaping.
    response = HttpResponse(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)
    response["Cache-Control"] = "no-store"
    return response


def _view_name(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    # Unmatched paths share one label: a scanner must not grow the label set.
    return match.view_name if match and match.view_name else "<unmatched>"


class RequestMetricsMiddleware:
    """Counts and times every request by view name and status class; not in the chain
    at all while /metrics is off (no METRICS_BEARER_TOKEN): agents' requests pay
    nothing for a figure nobody can read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        if not settings.METRICS_BEARER_TOKEN:
            raise MiddlewareNotUsed("METRICS_BEARER_TOKEN is not set")
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        view, status = _view_name(request), f"{response.status_code // 100}xx"
        method = request.method if request.method in KNOWN_METHODS else "other"
        HTTP_REQUESTS.labels(view, method, status).inc()
        HTTP_LATENCY.labels(view, status).observe(elapsed)
        return response


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
