"""Long polls: the agent's poll for commands, held open by the server until a
command is queued (``GET /api/v1/devices/pending?wait=N``).

The agent asks with ``wait`` from its very first poll. A server that holds
polls says so in ``X-Long-Poll-Max`` on polls and heartbeats; a poll answered
without it (Django alone, or a server whose Redis is in doubt) was a plain
poll, so the agent polls plainly at the advised interval until a poll or a
heartbeat carries the advertisement again.

While a long poll waits, the loop must go on collecting, pushing and sending
heartbeats: the request waits on a thread of its own (``PollThread``), which
only fetches. The loop takes the answer, so claiming, acknowledging and
running commands stay on the loop's thread as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from homepot_agent.transport import Pending

# An empty answer this much sooner than the wait asked for was not held: the
# server is full (it answers at once beyond its waiters' limit). Polling again
# at once would hammer it, so the next poll waits the advised interval.
EARLY_SLACK_SECONDS = 1.0
# How long a stopping agent waits for a long poll still out. The thread is a
# daemon: the process exits without it, and the server, seeing the connection
# close, hands it nothing; a command it answered with is not acknowledged, so
# the server delivers it again after its ack deadline.
STOP_JOIN_SECONDS = 0.2


@dataclass
class LongPollMode:
    """Whether polls ask the server to wait, and for how long."""

    configured: int  # long_poll_seconds; 0: plain polls only
    advertised: float | None = None  # the last X-Long-Poll-Max heard
    on: bool = field(init=False)

    def __post_init__(self) -> None:
        self.on = self.configured > 0  # optimistic: the first poll asks to wait

    def wait(self) -> int:
        """The `wait` of the next poll in whole seconds; 0 for a plain poll."""
        if not self.on:
            return 0
        if self.advertised is None:
            return self.configured
        return max(1, int(min(self.configured, self.advertised)))

    def heard(self, advert: float | None, *, from_poll: bool) -> bool:
        """Note an answer's advertisement (None: it had none). Only a poll's
        answer turns long polls off; any answer turns them on. True when they
        just turned on."""
        was_on = self.on
        if advert is not None:
            self.advertised = advert
        if self.configured <= 0:
            self.on = False
        elif advert is not None:
            self.on = True
        elif from_poll:
            self.on = False
        return self.on and not was_on

    def reconfigure(self, configured: int) -> None:
        self.configured = configured
        if configured <= 0:
            self.on = False


@dataclass
class PollAnswer:
    """What a long poll came back with: the commands, or why not."""

    wait: int
    seconds: float  # how long it was out
    pending: Pending | None = None
    error: Exception | None = None

    def early_and_empty(self) -> bool:
        """Nothing came, and sooner than asked: the server did not hold it."""
        return (
            self.pending is not None
            and not self.pending.commands
            and self.seconds < self.wait - EARLY_SLACK_SECONDS
        )


class PollThread:
    """One long poll at a time, on a daemon thread; `on_done` wakes the loop,
    which takes the answer."""

    def __init__(
        self, fetch: Callable[[int], Pending], on_done: Callable[[], None] = lambda: None
    ) -> None:
        self.fetch = fetch
        self.on_done = on_done
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._answer: PollAnswer | None = None
        self._out = False  # cleared with the answer stored, before the loop is woken

    def busy(self) -> bool:
        """A poll is out (its answer not yet in)."""
        with self._lock:
            return self._out

    def start(self, wait: int) -> None:
        with self._lock:
            self._out = True
        self._thread = threading.Thread(
            target=self._run, args=(wait,), name="long-poll", daemon=True
        )
        self._thread.start()

    def _run(self, wait: int) -> None:
        started = time.monotonic()
        answer = PollAnswer(wait=wait, seconds=0.0)
        try:
            answer.pending = self.fetch(wait)
        except Exception as exc:  # every failure goes to the loop, which backs off
            answer.error = exc
        answer.seconds = time.monotonic() - started
        with self._lock:
            self._answer, self._out = answer, False
        self.on_done()

    def take(self) -> PollAnswer | None:
        """The answer, once, after the poll came back; None before."""
        with self._lock:
            answer, self._answer = self._answer, None
        return answer

    def abandon(self, timeout: float = STOP_JOIN_SECONDS) -> None:
        """At stop: give a poll still out a moment, then leave it (see STOP_JOIN_SECONDS)."""
        if self._thread is not None:
            self._thread.join(timeout)
