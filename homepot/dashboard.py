"""Reads behind the fleet dashboard (the admin's first page): cards, device grid,
recent events, toasts, and the fingerprint that lets an open dashboard's poll
answer "nothing changed" cheaply.

Every read here costs a fixed number of queries, whatever the size of the fleet:
counts are aggregates, and the grid reads one page of devices plus that page's
latest values and rollups in one query each.
"""

import time
from collections import defaultdict
from dataclasses import astuple, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.db.models import Count, Max, Model, Q, QuerySet
from django.http import QueryDict
from django.utils.module_loading import import_string

RECENT_EVENTS = 20
SPARKLINE_POINTS = 30
TILE_METRICS_SHOWN = 3

# The project package wires the apps by dotted name and never imports them
# (analytics, commands -> devices -> homepot: tests/test_import_graph.py). The
# states it counts are spelled here; tests/test_dashboard.py keeps them equal to
# the models' choices.
IN_FLIGHT = ("queued", "delivered", "in_progress")
# A command "failed" on the card when it ended without succeeding (canceled and
# expired are an operator's or a deadline's choice, not a failure of the device).
FAILED = ("failed", "rejected", "timed_out")
OPEN_ALERT = ("firing", "acknowledged")
SEVERITIES = ("critical", "warning", "info")  # highest first
DEVICE_STATUSES = ("new", "online", "offline", "decommissioned")


def _model(label: str) -> type[Model]:
    return apps.get_model(label)


def _devices_feed(name: str) -> Any:
    return import_string(f"devices.feed.{name}")


INGEST_WINDOW = timedelta(minutes=1)
FINGERPRINT_KEY = "dashboard:fingerprint"
# The fingerprint is re-read from the database at most this often, so 50 open
# dashboards cost one query per second between them, not one per poll.
FINGERPRINT_TTL_SECONDS = 1


# --- Permissions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sections:
    """What this user may see: a card or the feed shows another app's data."""

    alerts: bool
    commands: bool
    ingest: bool
    events: bool

    @property
    def key(self) -> str:
        """The sections as a short string, for cache keys ("1011")."""
        return "".join("1" if shown else "0" for shown in astuple(self))

    @classmethod
    def for_user(cls, user: AbstractBaseUser) -> "Sections":
        return cls(
            alerts=user.has_perm("analytics.view_alert"),
            commands=user.has_perm("commands.view_command"),
            ingest=user.has_perm("analytics.view_sample"),
            events=user.has_perm("devices.view_event"),
        )


# --- Fingerprint: has anything changed? -----------------------------------------------


def dashboard_fingerprint(now: float | None = None) -> str:
    """Changes when an event is written (presence, commands, alerts all write
    events) and every DASHBOARD_REFRESH_SECONDS (last seen, values, ingest rate)."""
    newest = cache.get(FINGERPRINT_KEY)
    if newest is None:
        newest = _model("devices.Event").objects.aggregate(newest=Max("id"))["newest"] or 0
        cache.set(FINGERPRINT_KEY, newest, timeout=FINGERPRINT_TTL_SECONDS)
    tick = int((now or time.time()) // settings.DASHBOARD_REFRESH_SECONDS)
    return f"{newest}-{tick}"


# --- Cards ----------------------------------------------------------------------------


def device_counts() -> dict[str, int]:
    """Active devices: total, online, offline, never seen (one query)."""
    return (
        _model("devices.Device")
        .objects.active()
        .aggregate(
            total=Count("id"),
            online=Count("id", filter=Q(status="online")),
            offline=Count("id", filter=Q(status="offline")),
            never_seen=Count("id", filter=Q(status="new")),
        )
    )


def alert_counts() -> dict[str, int]:
    """Open alerts (firing or acknowledged) by severity, highest first (one query)."""
    rows = (
        _model("analytics.Alert")
        .objects.filter(state__in=OPEN_ALERT)
        .values("severity")
        .annotate(n=Count("id"))
        .order_by()
    )
    found = {row["severity"]: row["n"] for row in rows}
    return {severity: found.get(severity, 0) for severity in SEVERITIES}


def command_counts(now: datetime) -> dict[str, int]:
    """Commands in flight, and failed in the last 24 h (one query)."""
    return _model("commands.Command").objects.aggregate(
        in_flight=Count("id", filter=Q(status__in=IN_FLIGHT)),
        failed_24h=Count(
            "id", filter=Q(status__in=FAILED, finished_at__gte=now - timedelta(hours=24))
        ),
    )


def ingest_rate(now: datetime) -> float:
    """Values stored per second over the last minute (by the samples' own time)."""
    count = (
        _model("analytics.Sample").objects.filter(ts__gt=now - INGEST_WINDOW, ts__lte=now).count()
    )
    return round(count / INGEST_WINDOW.total_seconds(), 1)


def dashboard_cards(*, sections: Sections, now: datetime) -> dict[str, Any]:
    cards: dict[str, Any] = {"devices": device_counts()}
    if sections.alerts:
        cards["alerts"] = alert_counts()
    if sections.commands:
        cards["commands"] = command_counts(now)
    if sections.ingest:
        cards["ingest_per_second"] = ingest_rate(now)
    return cards


# --- Device grid ----------------------------------------------------------------------


@dataclass(frozen=True)
class GridFilters:
    site: str = ""
    device_type: str = ""
    status: str = ""
    page: int = 1

    @classmethod
    def parse(cls, params: QueryDict) -> "GridFilters":
        """Filters from the query string; an unknown status or a bad page is ignored."""
        status = params.get("status", "")
        page = params.get("page", "1")
        return cls(
            site=params.get("site", "")[:64],
            device_type=params.get("type", "")[:32],
            status=status if status in DEVICE_STATUSES else "",
            page=int(page) if page.isdigit() and 0 < int(page) < 10**6 else 1,
        )

    def query(self, page: int | None = None) -> str:
        """The query string of these filters (on another page)."""
        params = QueryDict(mutable=True)
        for name, value in (("site", self.site), ("type", self.device_type)):
            if value:
                params[name] = value
        if self.status:
            params["status"] = self.status
        params["page"] = str(page or self.page)
        return params.urlencode()


def ago(then: datetime, now: datetime) -> str:
    """How long ago, for people: "12 s ago", "5 min ago", "3 h ago", "2 d ago"."""
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@dataclass
class Tile:
    device: Model  # a devices.Device
    open_alerts: int
    seen_ago: str = ""
    metrics: list[dict[str, Any]] = field(default_factory=list)


def grid_devices(filters: GridFilters) -> QuerySet:
    devices = (
        _model("devices.Device")
        .objects.select_related("site")
        .annotate(open_alerts=Count("alerts", filter=Q(alerts__state__in=OPEN_ALERT)))
    )
    if filters.status != "decommissioned":
        devices = devices.active()
    if filters.site:
        devices = devices.filter(site__public_id=filters.site)
    if filters.device_type:
        devices = devices.filter(device_type=filters.device_type)
    if filters.status:
        devices = devices.filter(status=filters.status)
    return devices.order_by("site__public_id", "public_id")


def grid_page(*, filters: GridFilters, now: datetime, with_metrics: bool) -> tuple[Page, list]:
    """One page of tiles: the devices, their open alerts, their key metrics and
    the last hour of those metrics' minute rollups (4 queries)."""
    paginator = Paginator(grid_devices(filters), settings.DASHBOARD_PAGE_SIZE)
    page = paginator.get_page(filters.page)
    tiles = [
        Tile(
            device=device,
            open_alerts=device.open_alerts,
            seen_ago=ago(device.last_seen, now) if device.last_seen else "",
        )
        for device in page
    ]
    if with_metrics and tiles:
        _attach_metrics(tiles, now)
    return page, tiles


def _attach_metrics(tiles: list[Tile], now: datetime) -> None:
    wanted = settings.DASHBOARD_TILE_METRICS
    latest = (
        _model("analytics.LatestValue")
        .objects.filter(device_id__in=[tile.device.pk for tile in tiles], metric__name__in=wanted)
        .values_list("device_id", "metric_id", "metric__name", "value", "ts")
    )
    by_device: dict[int, list[tuple]] = defaultdict(list)
    for device_pk, metric_pk, name, value, ts in latest:
        by_device[device_pk].append((wanted.index(name), metric_pk, name, value, ts))
    shown = {device_pk: sorted(rows)[:TILE_METRICS_SHOWN] for device_pk, rows in by_device.items()}
    history = _sparkline_history(shown, now)
    for tile in tiles:
        tile.metrics = [
            {
                "name": name,
                "value": value,
                "ts": ts,
                "sparkline": sparkline_points(history[tile.device.pk, metric_pk]),
            }
            for _, metric_pk, name, value, ts in shown.get(tile.device.pk, [])
        ]


def _sparkline_history(shown: dict[int, list[tuple]], now: datetime) -> dict[tuple, list]:
    """The last hour's minute averages of the shown metrics (one query)."""
    pairs = Q()
    for device_pk, rows in shown.items():
        pairs |= Q(device_id=device_pk, metric_id__in=[row[1] for row in rows])
    history: dict[tuple, list] = defaultdict(list)
    if not shown:
        return history
    rows = (
        _model("analytics.RollupMinute")
        .objects.filter(pairs, bucket__gte=now - timedelta(hours=1))
        .order_by("device_id", "metric_id", "bucket")
        .values_list("device_id", "metric_id", "sum", "count")
    )
    for device_pk, metric_pk, total, count in rows:
        history[device_pk, metric_pk].append(total / count if count else 0.0)
    return history


def sparkline_points(values: list[float], width: int = 80, height: int = 20) -> str:
    """An SVG polyline's points for the values (the last SPARKLINE_POINTS of them)."""
    values = values[-SPARKLINE_POINTS:]
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / (len(values) - 1)
    return " ".join(
        f"{index * step:.1f},{height - (value - low) / span * height:.1f}"
        for index, value in enumerate(values)
    )


def grid_choices() -> dict[str, list]:
    """The filter menus: sites and device types in use (two queries)."""
    return {
        "sites": list(_model("devices.Site").objects.values_list("public_id", "name")),
        "types": list(
            _model("devices.Device")
            .objects.active()
            .order_by("device_type")
            .values_list("device_type", flat=True)
            .distinct()
        ),
    }


# --- Events: the recent feed and toasts -----------------------------------------------


def event_label(kind: str) -> str:
    return import_string("devices.event_kinds.EVENT_KINDS").get(kind, kind)


def feed_cursor_parse(text: str) -> Any:
    """The feed cursor a client sent; ValueError unless the feed gave it out."""
    return _devices_feed("FeedCursor").parse(text)


def feed_cursor_now() -> Any:
    """The feed's current horizon: toasts start after it."""
    return _devices_feed("feed_horizon")()


def recent_events(*, now: datetime, limit: int = RECENT_EVENTS) -> list[dict[str, Any]]:
    """The newest events, each with its kind's meaning and its age (one query)."""
    events = (
        _model("devices.Event")
        .objects.select_related("device")
        .order_by("-created_at", "-id")[:limit]
    )
    return [
        {"event": event, "label": event_label(event.kind), "ago": ago(event.created_at, now)}
        for event in events
    ]


TOAST_KINDS = {
    "device.online": "success",
    "device.offline": "warning",
    "alert.fired": "error",
    "alert.resolved": "success",
    "command.succeeded": "success",
    "command.failed": "error",
    "command.rejected": "error",
    "command.timed_out": "error",
}


@dataclass(frozen=True)
class Toasts:
    items: list[dict[str, str]]
    cursor: Any  # a devices.feed.FeedCursor


def toasts_after(
    *, cursor: Any, user: AbstractBaseUser, sections: Sections, limit: int = 50
) -> Toasts:
    """Toasts for the events after the cursor (in the feed's order, so none is
    skipped): presence changes, alerts firing or resolving, and the user's own
    commands finishing. What the user may not see is left out."""
    kinds = [
        kind
        for kind in TOAST_KINDS
        if kind.startswith("device.")
        or (kind.startswith("alert.") and sections.alerts)
        or (kind.startswith("command.") and sections.commands)
    ]
    page = _devices_feed("events_feed")(after=cursor, kinds=kinds, limit=limit)
    items = [
        _toast(event)
        for event in page.events
        if not event.kind.startswith("command.") or _queued_by(event, user)
    ]
    return Toasts(items=items, cursor=page.next)


def _queued_by(event: Model, user: AbstractBaseUser) -> bool:
    command = event.command
    return command is not None and command.created_by_id == user.pk


def _toast(event: Model) -> dict[str, str]:
    device = event.device.public_id if event.device else ""
    what = event.kind.split(".", 1)[1].replace("_", " ")
    text = f"{device}: {event.message or what}" if device else event.message or what
    return {"level": TOAST_KINDS[event.kind], "kind": event.kind, "text": text}
