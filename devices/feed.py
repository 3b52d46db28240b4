"""The event feed: every event once, in an order no later commit can go back on.

An integration polls `GET /api/v1/events?after=<cursor>` and keeps the `next`
cursor of each answer. Ordering by id alone would lose events: PostgreSQL hands
out ids when rows are inserted, not when they commit, so a transaction can
commit id 7 after id 8 was visible and served, and a client already past 8
would never see 7.

So events are ordered by (txid, id), txid being the id of the transaction that
wrote the event (Event.txid, set by the database), and a page holds only events
of transactions that have ended: those below the snapshot's xmin, the oldest
transaction still running. Everything below xmin is final (those transactions
committed or rolled back), and any transaction still running or yet to start
has a txid at or above it, so whatever it commits sorts after every event
served. The price: an event waits until every transaction that was writing
when it was written has ended (milliseconds here: transactions are short).

SQLite has one writer at a time: ids commit in the order they are handed out,
and every event has txid 0, so the order is by id and the horizon is the
largest id committed.
"""

import re
from dataclasses import dataclass

from django.db import connection
from django.db.models import Max, Q, QuerySet

from devices.models import Device, Event, Site

BIGINT_MAX = 2**63 - 1
CURSOR_FORMAT = re.compile(r"(\d{1,19})\.(\d{1,19})")


@dataclass(frozen=True, order=True)
class FeedCursor:
    """A place in the feed: after the event at (txid, id). "0.0" is the start."""

    txid: int
    id: int

    def __str__(self) -> str:
        return f"{self.txid}.{self.id}"

    @classmethod
    def parse(cls, text: str) -> "FeedCursor":
        """A cursor from its text; ValueError unless it is one the feed gave out."""
        match = CURSOR_FORMAT.fullmatch(text)
        if match is None:
            raise ValueError("Not a feed cursor: use the `next` of an earlier answer.")
        txid, id_ = int(match[1]), int(match[2])
        if txid > BIGINT_MAX or id_ > BIGINT_MAX:
            raise ValueError("Not a feed cursor: out of range.")
        return cls(txid, id_)


FEED_START = FeedCursor(0, 0)


@dataclass(frozen=True)
class FeedPage:
    events: list[Event]
    next: FeedCursor


def feed_horizon() -> FeedCursor:
    """The last place in the feed that is final: no transaction can still add an
    event at or before it. Read before the page, so the page's own (later)
    snapshot sees every event up to here."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            # (xmin, 0): ids start at 1, so this is "every txid below xmin".
            return FeedCursor(cursor.fetchone()[0], 0)
    newest = Event.objects.aggregate(newest=Max("id"))["newest"] or 0
    return FeedCursor(0, newest)


def events_feed(
    *,
    after: FeedCursor = FEED_START,
    kinds: list[str] | None = None,
    device: Device | None = None,
    site: Site | None = None,
    limit: int,
) -> FeedPage:
    """The next `limit` events after the cursor, oldest first, that match the
    filters. A short page holds every final event that matches, so its `next`
    moves to the horizon: the client skips what it has seen not to match."""
    horizon = feed_horizon()
    events = list(_feed_events(after, horizon, kinds, device, site)[:limit])
    if len(events) == limit:
        return FeedPage(events, _place(events[-1]))
    return FeedPage(events, max(after, horizon))


def _feed_events(
    after: FeedCursor,
    horizon: FeedCursor,
    kinds: list[str] | None,
    device: Device | None,
    site: Site | None,
) -> QuerySet[Event]:
    events = Event.objects.filter(_after(after), _at_or_before(horizon))
    if kinds:
        events = events.filter(kind__in=kinds)
    if device is not None:
        events = events.filter(device=device)
    if site is not None:
        events = events.filter(device__site=site)
    return events.select_related("device__site", "command").order_by("txid", "id")


def _after(cursor: FeedCursor) -> Q:
    # (txid, id) > cursor, written so the (txid, id) index scans from the cursor on.
    return Q(txid__gte=cursor.txid) & ~Q(txid=cursor.txid, id__lte=cursor.id)


def _at_or_before(horizon: FeedCursor) -> Q:
    return Q(txid__lt=horizon.txid) | Q(txid=horizon.txid, id__lte=horizon.id)


def _place(event: Event) -> FeedCursor:
    return FeedCursor(event.txid, event.id)
