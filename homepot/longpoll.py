"""Long-poll delivery of commands: GET /api/v1/devices/pending?wait=N under ASGI.

Django stays synchronous: every request, the long poll included, is answered by
the same WSGI application running in a small thread pool (a2wsgi). Only the
waiting happens here, in the event loop, so a waiting agent holds neither a
thread nor a database connection, only a socket and a few objects.

How a long poll goes:

1. The pending view runs as for a plain poll. If it found commands (or refused
   the request), that is the answer.
2. Found nothing, it names in internal response headers what may wake this
   device (its queue and auth scopes, the names `homepot.local_memory`
   already publishes on every enqueue and key change) and the Redis key of
   its queue marker.
3. The router registers a waiter for those scopes, *then* looks at the marker:
   an enqueue sets the marker before it publishes, so a command queued at any
   moment is either seen in the marker or wakes the waiter. Nothing is lost
   between the first look and the subscription.
4. Woken (or the marker set), the view runs again and its answer is sent; after
   N seconds with no news, the empty answer is sent.

A client that hangs up while waiting is noticed and nothing is claimed for it.
When the Redis subscription is in doubt (lost, reconnecting), every waiting
poll looks again, then reads its marker every second until the subscription
is back; meanwhile nothing is advertised and new polls are answered at once,
so agents fall back to plain polling.
"""

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

import redis.asyncio as aioredis
from django.conf import settings

from homepot.local_memory import CHANNEL, PING_SECONDS, SILENCE_SECONDS

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

PENDING_PATH = "/api/v1/devices/pending"
# Where agents learn that the server long-polls: the poll and the heartbeat.
ADVERTISING_PATHS = frozenset({PENDING_PATH, "/api/v1/devices/heartbeat"})
ADVERT_HEADER = "X-Long-Poll-Max"
# Between this router and the pending view only: stripped from every request
# that arrives and every response that leaves.
MODE_HEADER = "X-Homepot-Long-Poll"  # request: "first" or "recheck"
WAKE_HEADER = "X-Homepot-Wake"  # response: the scopes that wake this device
MARKER_HEADER = "X-Homepot-Marker"  # response: the Redis key of its queue marker
# Liveness probes are answered even when requests are shed.
UNSHED_PATHS = frozenset({"/health"})
# Without the subscription (or when its marker cannot be read), a waiting poll
# reads its queue marker this often.
MARKER_POLL_SECONDS = 1.0
# Redis connections per process for reading queue markers.
MARKER_CONNECTIONS = 20
# The name of each process's wake-up subscription in Redis's CLIENT LIST.
SUBSCRIBER_NAME = "homepot-long-poll"
_INTERNAL = {name.lower().encode() for name in (MODE_HEADER, WAKE_HEADER, MARKER_HEADER)}


class WakeHub:
    """One Redis subscription per process, waking the waiters of a scope."""

    def __init__(self, redis_url: str) -> None:
        self._redis_url = redis_url
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._waiting = 0
        self._alive = False
        self._task: asyncio.Task | None = None
        # Thousands of polls may read their marker at once: they queue for a few
        # connections rather than open one each (or fail past a pool's limit).
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url,
            max_connections=MARKER_CONNECTIONS,
            timeout=2,
            socket_connect_timeout=2,
            socket_timeout=2,
        )
        self._client = aioredis.Redis(connection_pool=pool)

    @property
    def alive(self) -> bool:
        return self._alive

    @property
    def waiting(self) -> int:
        return self._waiting

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._alive = False
        self._wake_all()
        await self._client.aclose()

    def register(self, scopes: Iterable[str]) -> asyncio.Event:
        event = asyncio.Event()
        for scope in scopes:
            self._waiters.setdefault(scope, set()).add(event)
        self._waiting += 1
        return event

    def unregister(self, scopes: Iterable[str], event: asyncio.Event) -> None:
        for scope in scopes:
            waiters = self._waiters.get(scope)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[scope]
        self._waiting -= 1

    async def marker_set(self, key: str) -> bool | None:
        """Whether the queue marker is set; None when Redis cannot tell now."""
        try:
            return bool(await self._client.exists(key))
        except (aioredis.RedisError, OSError) as exc:
            logger.warning("long poll: cannot read the queue marker: %s", exc)
            return None

    def _wake(self, scope: str) -> None:
        for event in self._waiters.get(scope, ()):
            event.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: stop advertising, reconnect
                logger.warning("long poll: wake-up subscription lost: %s", exc)
            self._alive = False
            # A message may have been missed: every waiter looks again.
            self._wake_all()
            await asyncio.sleep(1.0)

    async def _listen(self) -> None:
        client = aioredis.Redis.from_url(
            self._redis_url,
            socket_connect_timeout=2,
            socket_timeout=SILENCE_SECONDS,
            client_name=SUBSCRIBER_NAME,
        )
        loop = asyncio.get_running_loop()
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL)
                next_ping, heard_until = 0.0, loop.time() + SILENCE_SECONDS
                while True:
                    now = loop.time()
                    if now >= next_ping:
                        await pubsub.ping()
                        next_ping = now + PING_SECONDS
                    if now > heard_until:
                        raise TimeoutError("no answer to pings")
                    message = await pubsub.get_message(timeout=PING_SECONDS / 2)
                    if message is None:
                        continue
                    if message["type"] in ("subscribe", "pong"):
                        self._alive = True
                        heard_until = loop.time() + SILENCE_SECONDS
                    elif message["type"] == "message":
                        self._wake(message["data"].decode())
        finally:
            await client.aclose()


class CapturedResponse:
    """A response of the wrapped application, held back until we decide."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.messages[0]["headers"] if self.messages else ():
            if key == wanted:
                return value.decode("latin-1")
        return None

    async def replay(self, send: Send, advert: bytes | None) -> None:
        for message in self.messages:
            if message["type"] == "http.response.start":
                message = _with_headers(message, advert)
            await send(message)


def _with_headers(start: Message, advert: bytes | None) -> Message:
    headers = [(k, v) for k, v in start.get("headers", ()) if k not in _INTERNAL]
    if advert is not None:
        headers.append((ADVERT_HEADER.lower().encode(), advert))
    return {**start, "headers": headers}


def requested_wait(query_string: bytes) -> int:
    """The `wait` asked for, capped; 0 when absent or not a plain number (the
    view then answers at once, and refuses a malformed value with a 400)."""
    for key, value in parse_qsl(query_string.decode("latin-1")):
        if key == "wait":
            if not value.isascii() or not value.isdigit() or len(value) > 6:
                return 0
            return min(int(value), settings.LONG_POLL_MAX_SECONDS)
    return 0


def _request_with_mode(scope: Scope, mode: str | None) -> Scope:
    headers = [(k, v) for k, v in scope.get("headers", ()) if k not in _INTERNAL]
    if mode is not None:
        headers.append((MODE_HEADER.lower().encode(), mode.encode()))
    return {**scope, "headers": headers}


async def _send_busy(send: Send) -> None:
    body = json.dumps({"detail": "The server is busy; try again shortly.", "code": "server_busy"})
    headers = [
        (b"content-type", b"application/json"),
        # Spread over a few seconds, so the fleet does not come back at once.
        (b"retry-after", str(random.randint(1, 5)).encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})


async def _empty_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _hung_up(receive: Receive) -> None:
    """Returns when the client disconnects."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _wait_for_news(
    hub: WakeHub, event: asyncio.Event, marker: str, hung_up: asyncio.Task, deadline: float
) -> str:
    """ "news" (look again), "no news" by the deadline, or "hung up".

    The waiter is registered before the marker is read, so an enqueue is
    either seen in the marker or wakes the event. While the subscription is
    down (a Redis restart), the marker is read every MARKER_POLL_SECONDS instead.
    """
    loop = asyncio.get_running_loop()
    while True:
        marker_set = await hub.marker_set(marker)
        if marker_set:
            return "news"
        remaining = deadline - loop.time()
        if remaining <= 0:
            return "no news"
        trusted = hub.alive and marker_set is not None
        woken = loop.create_task(event.wait())
        await asyncio.wait(
            {woken, hung_up},
            timeout=remaining if trusted else min(remaining, MARKER_POLL_SECONDS),
            return_when=asyncio.FIRST_COMPLETED,
        )
        woken.cancel()
        if hung_up.done():
            return "hung up"
        if event.is_set():
            return "news"


class LongPollRouter:
    """ASGI application: long polls wait here, everything else goes straight through."""

    def __init__(self, app: App, redis_url: str | None) -> None:
        self._app = app
        self._redis_url = redis_url
        self._hub: WakeHub | None = None
        self._admitted = 0  # requests running in, or queued for, Django's threads

    async def _django(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request in Django, unless too many already wait for its threads.

        Beyond WEB_MAX_QUEUED the answer is an immediate 503 with Retry-After:
        an overloaded server that queued everything would answer requests long
        after their clients gave up (and claim commands for agents that left).
        """
        if self._admitted >= settings.WEB_MAX_QUEUED and scope["path"] not in UNSHED_PATHS:
            await _send_busy(send)
            return
        self._admitted += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self._admitted -= 1

    def _started_hub(self) -> WakeHub | None:
        if self._redis_url is None:
            return None
        if self._hub is None:
            self._hub = WakeHub(self._redis_url)
        self._hub.start()
        return self._hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        hub = self._started_hub()
        advert = None
        if hub is not None and hub.alive and scope["path"] in ADVERTISING_PATHS:
            advert = str(settings.LONG_POLL_MAX_SECONDS).encode()
        wait = 0
        if advert is not None and scope["path"] == PENDING_PATH and scope["method"] == "GET":
            wait = requested_wait(scope.get("query_string", b""))
        if wait and hub.waiting < settings.LONG_POLL_MAX_WAITERS:
            await self._long_poll(scope, receive, send, hub, wait)
            return

        async def send_advertised(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = _with_headers(message, advert)
            await send(message)

        await self._django(_request_with_mode(scope, None), receive, send_advertised)

    async def _run(self, scope: Scope, mode: str) -> CapturedResponse:
        captured = CapturedResponse()
        await self._django(_request_with_mode(scope, mode), _empty_body, captured.send)
        return captured

    async def _long_poll(
        self, scope: Scope, receive: Receive, send: Send, hub: WakeHub, wait: int
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        response = await self._run(scope, "first")
        hung_up = loop.create_task(_hung_up(receive))
        try:
            while (wake := response.header(WAKE_HEADER)) is not None and loop.time() < deadline:
                scopes = wake.split()
                event = hub.register(scopes)
                try:
                    outcome = await _wait_for_news(
                        hub, event, response.header(MARKER_HEADER) or "", hung_up, deadline
                    )
                finally:
                    hub.unregister(scopes, event)
                if outcome == "hung up":
                    return  # nobody to answer: claim nothing for them
                if outcome == "no news":
                    break  # the empty answer stands
                response = await self._run(scope, "recheck")
        finally:
            hung_up.cancel()
        advert = str(settings.LONG_POLL_MAX_SECONDS).encode() if hub.alive else None
        await response.replay(send, advert)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._started_hub()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._hub is not None:
                    await self._hub.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
