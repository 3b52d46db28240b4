"""The device page's header, latest values and charts: a range picker whose range
decides the step (and so raw samples, minute or hour rollups, exactly as the
metrics API decides for that step: both go through analytics.queries), and one
metric across every device of the device's site.
"""

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Max
from django.http import QueryDict
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from analytics import charts, queries
from analytics.models import LatestValue, MetricName
from devices.models import Device

DEFAULT_CHARTS = ["cpu_percent", "memory_percent", "disk_percent"]
MAX_CHARTS = 6
# Range name -> (seconds, step seconds). A step that is no whole minute reads raw
# samples, whole minutes minute rollups, whole hours hour rollups (queries.SOURCES).
RANGES = {
    "1h": (3600, 10),
    "6h": (6 * 3600, 60),
    "24h": (86400, 300),
    "7d": (7 * 86400, 3600),
    "30d": (30 * 86400, 4 * 3600),
}
DEFAULT_RANGE = "24h"
# A custom range gets the smallest of these steps that draws at most CUSTOM_POINTS points.
CUSTOM_STEPS = [10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600]
CUSTOM_STEPS += [12 * 3600, 86400]
CUSTOM_POINTS = 360
CUSTOM_MAX_DAYS = 5 * 366  # hour rollups are kept five years by default
CUSTOM_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends
MAX_SITE_METRICS = 500


@dataclass(frozen=True)
class ChartRange:
    name: str  # a key of RANGES or "custom"
    start: datetime
    end: datetime
    step: int
    error: str = ""  # why a custom range asked for was not used


def _step_for_span(seconds: float) -> int:
    return next((s for s in CUSTOM_STEPS if seconds / s <= CUSTOM_POINTS), CUSTOM_STEPS[-1])


def _parse_time(raw: str) -> datetime | None:
    try:
        return datetime.strptime(raw.strip(), CUSTOM_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _custom_range(params: QueryDict, now: datetime) -> ChartRange:
    start, end = _parse_time(params.get("start", "")), _parse_time(params.get("end", ""))
    if start is None or end is None:
        return _preset(DEFAULT_RANGE, now, error="Start and end must be dates with a time.")
    end = min(end, now)
    if start >= end:
        return _preset(DEFAULT_RANGE, now, error="Start must be before end (and the past).")
    if end - start > timedelta(days=CUSTOM_MAX_DAYS):
        return _preset(DEFAULT_RANGE, now, error=f"At most {CUSTOM_MAX_DAYS} days.")
    step = _step_for_span(end.timestamp() - start.timestamp())
    return ChartRange("custom", start, end, step)


def _preset(name: str, now: datetime, error: str = "") -> ChartRange:
    seconds, step = RANGES[name]
    return ChartRange(name, now - timedelta(seconds=seconds), now, step, error)


def chart_range_parse(params: QueryDict, now: datetime) -> ChartRange:
    """The range the page's GET parameters ask for: range=1h|6h|24h|7d|30d, or
    range=custom with start and end (UTC, as datetime-local inputs send them)."""
    name = params.get("range", DEFAULT_RANGE)
    if name == "custom":
        return _custom_range(params, now)
    return _preset(name if name in RANGES else DEFAULT_RANGE, now)


# --- One metric across a site: the rows of every device in one query per source -------------

SiteRow = tuple[int, queries.Row]


def _site_raw_rows(site_pk: int, metric_pk: int, start: datetime, end: datetime) -> Iterator:
    rows = queries.Sample.objects.filter(
        device__site_id=site_pk, metric_id=metric_pk, ts__gte=start, ts__lt=end
    ).values_list("device_id", "ts", "value")
    for device_pk, ts, value in rows.iterator(chunk_size=5000):
        yield device_pk, (ts, value, value, value, 1)


def _site_rows(
    level: int, site_pk: int, metric_pk: int, start: datetime, end: datetime
) -> Iterator[SiteRow]:
    """queries._rows for all devices of a site at once: rollups, then the tail
    they do not cover yet from the next finer source."""
    name, model, resolution = queries.SOURCES[level]
    if name == "raw":
        yield from _site_raw_rows(site_pk, metric_pk, start, end)
        return
    rollups = model.objects.filter(
        device__site_id=site_pk, metric_id=metric_pk, bucket__gte=start, bucket__lt=end
    )
    fields = ("device_id", "bucket", "min", "max", "sum", "count")
    for device_pk, *row in rollups.values_list(*fields).iterator(chunk_size=5000):
        yield device_pk, tuple(row)
    # One rollup task writes every device's buckets: the site's newest is theirs.
    last = rollups.aggregate(last=Max("bucket"))["last"]
    tail_start = start if last is None else last + timedelta(seconds=resolution)
    if tail_start < end:
        yield from _site_rows(level + 1, site_pk, metric_pk, tail_start, end)


def site_metric_series(
    *, site_pk: int, name: str, chart_range: ChartRange, now: datetime
) -> dict[str, list[dict]]:
    """{device label: points} for every device of the site with `name` in the range,
    from the source analytics.queries picks for the range's step."""
    metric_pk = MetricName.objects.filter(name=name).values_list("pk", flat=True).first()
    if metric_pk is None:
        return {}
    level = queries._source_level(chart_range.step, chart_range.start, now)
    resolution = queries.SOURCES[level][2]
    step = -(-chart_range.step // resolution) * resolution
    start = datetime.fromtimestamp(int(chart_range.start.timestamp()) // step * step, tz=UTC)
    rows_by_device: dict[int, list[queries.Row]] = defaultdict(list)
    for device_pk, row in _site_rows(level, site_pk, metric_pk, start, chart_range.end):
        rows_by_device[device_pk].append(row)
    labels = dict(Device.objects.filter(pk__in=rows_by_device).values_list("pk", "public_id"))
    return {
        labels[pk]: queries._aggregate(iter(rows), step, "avg")
        for pk, rows in sorted(rows_by_device.items(), key=lambda item: labels[item[0]])
    }


def site_metric_names(site_pk: int) -> list[str]:
    """The metrics any device of the site reports (their latest values), sorted."""
    rows = (
        LatestValue.objects.filter(device__site_id=site_pk)
        .order_by("metric__name")
        .values_list("metric__name", flat=True)
        .distinct()
    )
    return list(rows[:MAX_SITE_METRICS])


# --- The panel ----------------------------------------------------------------------------------


def _chosen_charts(chosen: list[str], latest: dict) -> list[str]:
    return (
        [name for name in chosen if name in latest][:MAX_CHARTS]
        or [name for name in DEFAULT_CHARTS if name in latest]
        or list(latest)[:2]
    )


def _device_chart(device: Device, name: str, chart_range: ChartRange, now: datetime) -> dict:
    series = queries.metric_series(
        device_pk=device.pk,
        name=name,
        start=chart_range.start,
        end=chart_range.end,
        step=chart_range.step,
        agg="avg",
        now=now,
    )
    # Labelled for the range asked for (series.start is aligned down to the step),
    # as the site chart is.
    svg = charts.metric_chart_svg(name, series.points, start=chart_range.start, end=chart_range.end)
    # SVG we generate; metric names are validated at ingest (no markup possible)
    return {
        "name": name,
        "resolution": series.resolution,
        "step": series.step,
        "svg": mark_safe(svg),
    }


def _site_chart(device: Device, name: str, chart_range: ChartRange, now: datetime) -> SafeString:
    series = site_metric_series(site_pk=device.site_id, name=name, chart_range=chart_range, now=now)
    svg = charts.site_chart_svg(name, series, start=chart_range.start, end=chart_range.end)
    return mark_safe(svg)  # our SVG; device ids and metric names are validated on the way in


def _range_links(params: QueryDict) -> list[dict]:
    links = []
    for name in RANGES:
        query = params.copy()
        query["range"] = name
        for key in ("start", "end", "panel"):
            query.pop(key, None)
        links.append({"name": name, "query": query.urlencode()})
    return links


def device_charts_context(device: Device, params: QueryDict, live_url: str) -> dict:
    """Latest values (with units), the chosen charts over the chosen range, and the
    site chart of one metric. `live_url` answers this panel again (polled)."""
    now = timezone.now()
    latest = queries.latest_values(device.pk)
    chart_range = chart_range_parse(params, now)
    chosen = _chosen_charts(params.getlist("chart"), latest)
    site_names = site_metric_names(device.site_id)
    site_metric = params.get("site_metric") or (chosen[0] if chosen else "")
    site_metric = site_metric if site_metric in site_names else (chosen or site_names or [""])[0]
    return {
        "latest_metrics": {
            name: {**value, "unit": charts.metric_unit(name)} for name, value in latest.items()
        },
        "metric_names": list(latest),
        "chosen_charts": chosen,
        "charts": [_device_chart(device, name, chart_range, now) for name in chosen],
        "range": chart_range,
        "range_links": _range_links(params),
        "custom_start": chart_range.start.strftime(CUSTOM_FORMAT),
        "custom_end": chart_range.end.strftime(CUSTOM_FORMAT),
        "site_metric": site_metric,
        "site_metric_names": site_names,
        "site_chart": _site_chart(device, site_metric, chart_range, now) if site_metric else None,
        "live_url": live_url,
        "poll_ms": LIVE_POLL_MS,
    }


LIVE_POLL_MS = 5000


# --- The header ---------------------------------------------------------------------------------


def _usable_key_created(device: Device, now: datetime) -> datetime | None:
    """When the newest key the device can still use was issued (not revoked or expired)."""
    keys = device.credentials.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)
    return keys.order_by("-created_at").values_list("created_at", flat=True).first()


def device_header_context(device: Device) -> dict:
    """Status, identity and key age at the top of the device's panels."""
    now = timezone.now()
    key_created = _usable_key_created(device, now)
    return {
        "status": device.status,
        "status_label": device.get_status_display(),
        "public_id": device.public_id,
        "name": device.name,
        "site": device.site,
        "device_type": device.device_type,
        "agent_version": device.agent_version,
        "last_seen": device.last_seen,
        "key_created": key_created,
        "key_age": now - key_created if key_created else None,
    }
