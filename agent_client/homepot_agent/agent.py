"""The agent's loop: collect, push, poll, each on its own schedule, while
commands run one at a time on a worker thread.

Everything the loop touches (clock, transport, collectors, executor, spool,
ledger, worker) is passed in, so tests drive it without sleeping.

What the server's answers mean here (see transport.py for how they are sorted):

* busy or unreachable (no answer, 429, 5xx): everything is kept; the job backs
  off exponentially with jitter, at most ``max_backoff`` seconds (or its own
  interval, if longer), and never less than the server's ``Retry-After``
  within that cap.
* a batch answered 400/422 (or 413 for a single sample; larger batches are
  split first) will never be taken: it moves to the spool's quarantine. So does
  a batch answered 500 ``POISON_500_LIMIT`` times in a row while the server
  answers the heartbeat: one bad batch must not block the spool forever.
* 401/403: the server refuses the key. Pushing and polling stop, the data is
  kept, ``status`` and the log say so; the key is re-checked (one heartbeat)
  every back-off period, and everything resumes once it is accepted.
* a command result answered 409 (already final) or 404 is done; 400/413/422 get
  one shorter report (status and reason, no result object); busy answers keep
  it owed.

Polls ask the server to hold them until a command is queued (long polls, see
longpoll.py) while it advertises that it does; under ``run`` such a poll waits
on a thread of its own, and the loop takes its answer.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from homepot_agent.config import AgentConfig
from homepot_agent.executor import FAILED, Outcome
from homepot_agent.files import write_private
from homepot_agent.lab import LabScheduler
from homepot_agent.ledger import INTERRUPTED
from homepot_agent.longpoll import LongPollMode, PollAnswer, PollThread
from homepot_agent.spool import Batch, Spool, wire_samples
from homepot_agent.transport import ApiClient, Pending, Refused, Unreachable

logger = logging.getLogger("homepot_agent")

MAX_BATCH_SAMPLES = 500
POLL_BOUNDS = (1.0, 600.0)
PERMANENT_BATCH_STATUSES = frozenset({400, 413, 422})
POISON_500_LIMIT = 5
DONE_RESULT_STATUSES = frozenset({404, 409})  # the server has a final state, or no command
SHUTDOWN_GRACE_SECONDS = 5.0
# These change the agent itself (its settings; the machine): they run on the
# loop's own thread, never beside it.
INLINE_COMMANDS = frozenset({"reboot", "update_config"})
Sample = tuple[float, dict[str, float]]


@dataclass
class Schedule:
    """A drift-free periodic schedule: the next due time advances by whole
    intervals from the start, so slow iterations do not push it later."""

    interval: float
    due: float
    failures: int = 0

    def advance(self, now: float) -> None:
        self.failures = 0
        missed = max(0, int((now - self.due) // self.interval))
        self.due += self.interval * (missed + 1)

    def back_off(
        self,
        now: float,
        *,
        cap: float,
        retry_after: float | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """Exponential back-off with jitter after a failure, capped so the agent is
        back soon after the server is (but never sooner than its own interval)."""
        self.failures += 1
        ceiling = max(cap, self.interval)
        delay = min(ceiling, self.interval * 2 ** min(self.failures - 1, 30))
        delay *= 0.5 + 0.5 * jitter()  # a fleet does not come back all at once
        if retry_after is not None:
            delay = max(delay, min(ceiling, retry_after))
        self.due = now + delay


@dataclass
class Status:
    """What `homepot-agent status` shows; written to the state directory."""

    last_push: float | None = None
    last_poll: float | None = None
    last_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class CommandWorker:
    """Runs one command at a time on a thread of its own, so the loop keeps
    collecting and pushing while it runs. Only the ledger (thread-safe) is
    shared with the loop; every HTTP request stays on the loop's thread."""

    def __init__(self, on_done: Callable[[], None] = lambda: None) -> None:
        self.on_done = on_done
        self.current: str | None = None
        self._thread: threading.Thread | None = None
        self._running = False  # cleared before the loop hears of the finish
        self._finished = threading.Event()

    def busy(self) -> bool:
        return self._running

    def start(self, command_id: str, job: Callable[[], None]) -> None:
        def run() -> None:
            try:
                job()
            finally:
                self.current = None
                self._running = False
                self._finished.set()
                self.on_done()

        self.current = command_id
        self._running = True
        self._thread = threading.Thread(target=run, name=f"command-{command_id}", daemon=True)
        self._thread.start()

    def take_finished(self) -> bool:
        """True once after a command finished."""
        if self._finished.is_set():
            self._finished.clear()
            return True
        return False

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


class InlineWorker(CommandWorker):
    """Runs the command right away on the caller's thread (simulated devices,
    whose commands take no time)."""

    def busy(self) -> bool:
        return False

    def start(self, command_id: str, job: Callable[[], None]) -> None:
        job()
        self._finished.set()


class Agent:
    POISON_500_LIMIT = POISON_500_LIMIT

    def __init__(
        self,
        config: AgentConfig,
        *,
        client: ApiClient,
        collect: Callable[[], dict[str, float]],
        executor: Any,
        ledger: Any,
        spool: Spool,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        attributes: Callable[[], dict[str, Any]] = lambda: {},
        worker: CommandWorker | None = None,
        lab: LabScheduler | None = None,
    ) -> None:
        self.config = config
        self.lab = lab  # lab collectors, each on its own interval
        self.client = client
        self.collect = collect
        self.executor = executor
        self.ledger = ledger
        self.spool = spool
        self.clock = clock
        self.wall_clock = wall_clock
        self.attributes = attributes
        # Which process this is: two agents sharing one identity (a copied
        # state directory) show the server two instance ids.
        self.instance_id = secrets.token_hex(16)
        self._wake = threading.Event()
        self.worker = worker or CommandWorker(on_done=self.wake)
        self.buffer: list[Sample] = []
        self.waiting: deque[dict[str, Any]] = deque()  # delivered, claimed, not yet started
        self.status = Status()
        self.key_refused = ""
        self.rebooting = False
        self.last_failure: Exception | None = None
        self._500s: dict[str, int] = {}
        now = clock()
        self.collecting = Schedule(config.collect_interval, now)
        self.pushing = Schedule(config.push_interval, now + config.push_interval)
        self.polling = Schedule(config.poll_interval, now)
        self.long_poll = LongPollMode(config.long_poll_seconds)
        self._poll_thread: PollThread | None = None  # under run() only

    def reconfigure(
        self,
        config: AgentConfig,
        collect: Callable[[], dict[str, float]],
        lab: LabScheduler | None = None,
    ) -> None:
        """Apply new settings without a restart (update_config)."""
        self.config = config
        self.collect = collect
        if self.lab is not None:
            self.lab.close()
        self.lab = lab
        self.collecting.interval = config.collect_interval
        self.pushing.interval = config.push_interval
        self.polling.interval = config.poll_interval
        self.long_poll.reconfigure(config.long_poll_seconds)

    def wake(self) -> None:
        """Make the loop look at its jobs now (a command finished; a stop signal)."""
        self._wake.set()

    def commands_busy(self) -> bool:
        return self.worker.busy()

    # --- telemetry -------------------------------------------------------------------------

    def collect_once(self) -> None:
        self._keep(self.collect())

    def collect_lab(self, now: float) -> None:
        """The lab collectors due now (each has its own interval)."""
        if self.lab is not None:
            values = self.lab.collect_due(now)
            if values:
                self._keep(values)

    def thermal_advice(self, interval: float, lease: float) -> None:
        """The server watches this device's thermal view: frames go faster for a while."""
        if self.lab is not None:
            self.lab.advise_thermal(interval, lease, self.clock())
            self.wake()

    def _keep(self, values: dict[str, float]) -> None:
        self.buffer.append((self.wall_clock(), values))
        # Memory holds no more than the spool may: beyond that, samples go to
        # the spool, which drops (and counts) the oldest when it is full.
        if len(self.buffer) >= min(MAX_BATCH_SAMPLES, self.config.spool_max_samples):
            self.flush()

    def push_once(self) -> bool:
        """Send the spool (oldest first, the buffer last), then a heartbeat.
        False if that failed; whatever was not sent waits in the spool."""
        self.flush()  # on disk first: a stop (or a crash) loses nothing collected
        try:
            if self.key_refused:
                self._check_key()
            self._drain_spool()
            self._heartbeat()
        except (Unreachable, Refused) as exc:
            self._failed(exc)
            return False
        self.status.last_push = self.wall_clock()
        return True

    def _drain_spool(self) -> None:
        while (batch := self.spool.oldest_batch(MAX_BATCH_SAMPLES)) is not None:
            try:
                self.client.push(batch_id=batch.batch_id, samples=wire_samples(batch.samples))
            except Refused as exc:
                if exc.status == 413 and self.spool.split_batch(batch.batch_id):
                    continue  # too large: the halves go as two batches
                if exc.status not in PERMANENT_BATCH_STATUSES:
                    raise  # the key, a redirect, ...: nothing wrong with the batch
                self._quarantine(batch, f"HTTP {exc}")
                continue
            except Unreachable as exc:
                if exc.status == 500 and self._poisoned(batch.batch_id):
                    self._quarantine(batch, f"HTTP 500 {POISON_500_LIMIT} times in a row")
                    continue
                raise
            self._500s.pop(batch.batch_id, None)
            self.spool.remove_batch(batch.batch_id)

    def _poisoned(self, batch_id: str) -> bool:
        """Count a 500 against this batch only if the server answers otherwise:
        a server failing as a whole must not send the whole spool to quarantine."""
        try:
            self._heartbeat()
        except (Unreachable, Refused):
            return False
        self._500s[batch_id] = self._500s.get(batch_id, 0) + 1
        return self._500s[batch_id] >= POISON_500_LIMIT

    def _quarantine(self, batch: Batch, reason: str) -> None:
        logger.error(
            "the server will not take batch %s (%d samples): %s; kept in quarantine",
            batch.batch_id,
            len(batch.samples),
            reason,
        )
        self._500s.pop(batch.batch_id, None)
        self.spool.quarantine(batch.batch_id, reason)

    def _heartbeat(self) -> None:
        advert = self.client.heartbeat(
            {
                **self.attributes(),
                "instance_id": self.instance_id,
                "spool_depth": self.spool.depth(),
                "spool_dropped": self.spool.dropped(),
                "quarantined": self.spool.quarantined(),
            }
        )
        self._heard(advert, from_poll=False)

    def _heard(self, advert: float | None, *, from_poll: bool) -> None:
        """An answer's long-poll advertisement; turned on, the next poll goes now."""
        if self.long_poll.heard(advert, from_poll=from_poll) and not self.polling.failures:
            self.polling.due = min(self.polling.due, self.clock())

    def _check_key(self) -> None:
        """One heartbeat; raises while the key is still refused."""
        self._heartbeat()
        logger.warning("the server accepts this device's key again; resuming")
        self.key_refused = ""

    def flush(self) -> None:
        if self.buffer:
            self.spool.add(self.buffer)
            self.buffer = []

    # --- commands --------------------------------------------------------------------------

    def poll_once(self) -> bool:
        """Send results still owed, then start the next command if none runs.
        The poll asks the server to wait while long polls are on, so against a
        server that holds polls this returns when a command comes or the wait
        is over (under run() a long poll waits on its own thread instead)."""
        if self.key_refused:
            return False  # push_once checks the key; nothing is asked for meanwhile
        try:
            self._send_owed_results()
            if not self.rebooting:
                self._next_command()
            if not self.worker.busy():
                self._send_owed_results()  # what ran inline just now
        except (Unreachable, Refused) as exc:
            self._failed(exc)
            return False
        self.status.last_poll = self.wall_clock()
        return True

    def _next_command(self) -> None:
        if not self._busy_with_commands():
            self._take_pending(self.client.pending(limit=1, wait=self.long_poll.wait()))

    def _busy_with_commands(self) -> bool:
        """Start commands waiting here; True while one still waits or runs.
        One at a time: a command delivered now is started now, so no command
        waits here while its ack deadline runs out."""
        self._start_waiting()
        return bool(self.waiting) or self.worker.busy()

    def _take_pending(self, pending: Pending) -> None:
        if pending.advised_interval:
            low, high = POLL_BOUNDS
            self.polling.interval = min(high, max(low, pending.advised_interval))
        self._heard(pending.long_poll_max, from_poll=True)
        for command in pending.commands:
            self._take(command)
        self._start_waiting()

    # --- long polls on their own thread (under run) ------------------------------------

    def _long_polling(self) -> bool:
        return self._poll_thread is not None and self.long_poll.on

    def start_long_poll(self) -> bool:
        """Send results still owed, then leave a long poll waiting on its thread."""
        if self.key_refused or self._poll_thread is None:
            return False
        try:
            self._send_owed_results()
            if self.rebooting or self._busy_with_commands():
                return True
            self._send_owed_results()  # what ran inline just now
        except (Unreachable, Refused) as exc:
            self._failed(exc)
            return False
        self._poll_thread.start(self.long_poll.wait())
        return True

    def _long_poll_answered(self, answer: PollAnswer, now: float) -> None:
        """Take the commands a long poll brought; schedule the next poll: at once
        while the server holds polls, after the advised interval when not."""
        try:
            if answer.error is not None:
                raise answer.error
            assert answer.pending is not None
            if answer.pending.thermal is not None:  # its thread calls no hooks
                self.thermal_advice(*answer.pending.thermal)
            self._take_pending(answer.pending)
            if not self.worker.busy():
                self._send_owed_results()  # what ran inline just now
        except (Unreachable, Refused) as exc:
            self._poll_failed(exc, now)
            return
        except Exception as exc:  # a garbled answer: back off as from a failing server
            self._poll_failed(Unreachable(f"GET pending: {exc.__class__.__name__}: {exc}"), now)
            return
        self.status.last_poll = self.wall_clock()
        self.polling.failures = 0
        held = self.long_poll.on and not answer.early_and_empty()
        self.polling.due = now if held else now + self.polling.interval

    def _poll_failed(self, exc: Exception, now: float) -> None:
        self._failed(exc)
        retry_after = getattr(exc, "retry_after", None)
        self.polling.back_off(now, cap=self.config.max_backoff, retry_after=retry_after)

    def run_command(self, command: dict[str, Any]) -> None:
        """Take on a delivered command: start it, or answer a redelivery."""
        try:
            self._take(command)
            self._start_waiting()
        except (Unreachable, Refused) as exc:
            self._failed(exc)

    def _take(self, command: dict[str, Any]) -> None:
        command_id = str(command["command_id"])
        if any(str(c["command_id"]) == command_id for c in self.waiting):
            return
        if self.ledger.claim(command_id):
            self.waiting.append(command)
        else:
            self._redelivered(command)

    def _start_waiting(self) -> None:
        """Start waiting commands while the worker is free: ack each as it starts.
        An ack that gets no answer leaves the command waiting for the next poll."""
        while self.waiting and not self.worker.busy():
            command = self.waiting[0]
            command_id = str(command["command_id"])
            refused = self.executor.check(command)
            if refused is not None:  # nothing runs, so nothing to acknowledge
                self.waiting.popleft()
                self._record_and_report(command_id, refused)
                continue
            try:
                self.client.ack(self.config.device_id, command_id)
            except Refused as exc:
                if exc.key_refused or 300 <= exc.status < 400:
                    raise
                # canceled or re-queued meanwhile: not ours to run now
                self.waiting.popleft()
                self.ledger.release(command_id)
                logger.warning("command %s not acknowledged (%s); not running it", command_id, exc)
                continue
            self.waiting.popleft()
            self.ledger.mark_started(command_id)
            if command.get("command_type") in INLINE_COMMANDS:
                self._run_inline(command_id, command)
            else:
                self.worker.start(command_id, lambda c=command, i=command_id: self._execute(i, c))

    def _execute(self, command_id: str, command: dict[str, Any]) -> None:
        """On the worker thread: run it and record the result (sent by the loop)."""
        try:
            outcome = self.executor.execute(command)
        except Exception as exc:  # a bug here must still leave a result
            logger.exception("command %s failed in the agent", command_id)
            outcome = Outcome(FAILED, {}, error=f"the agent failed running it: {exc}")
        self.ledger.record_result(command_id, outcome.as_report(_iso(self.wall_clock())))

    def _run_inline(self, command_id: str, command: dict[str, Any]) -> None:
        outcome = self.executor.execute(command)
        report = outcome.as_report(_iso(self.wall_clock()))
        if command.get("command_type") != "reboot" or outcome.status != "in_progress":
            self._record_and_report(command_id, outcome)
            return
        # noted first: a crash right after must still confirm it
        self.ledger.note_reboot(command_id, outcome.result.get("boot_id", ""))
        self.ledger.record_result(command_id, report)
        self._try_report(command_id, report)
        failure = self.executor.reboot_now()  # None: the machine is going down
        if failure is None:
            self.rebooting = True  # take on nothing more
            return
        self._record_and_report(command_id, failure)

    def _record_and_report(self, command_id: str, outcome: Outcome) -> None:
        report = outcome.as_report(_iso(self.wall_clock()))
        self.ledger.record_result(command_id, report)
        self._try_report(command_id, report)

    def _redelivered(self, command: dict[str, Any]) -> None:
        """A command this device already took on came again: it is never run twice.
        The server gets the result it missed, or learns the run was cut off."""
        command_id = str(command["command_id"])
        if self.worker.current == command_id:
            return  # running right now; its result follows
        report = self.ledger.report_of(command_id)
        if report is None and not self.ledger.started_without_result(command_id):
            self.waiting.append(command)  # claimed but never started: it may run
            return
        logger.warning("command %s was delivered again; not running it twice", command_id)
        if report is None:  # started, then cut off by a stop: never run it again
            report = {
                "status": FAILED,
                "result": {},
                "error": INTERRUPTED,
                "executed_at": _iso(self.wall_clock()),
            }
            self.ledger.record_result(command_id, report)
        self._try_report(command_id, report)

    def _send_owed_results(self) -> None:
        for command_id, report in self.ledger.unsent():
            try:
                self._send_result(command_id, report)
            except Unreachable as exc:
                if exc.status != 500:
                    raise  # busy or away: the rest waits too
                logger.warning("result of %s answered 500; sent again later", command_id)

    def _try_report(self, command_id: str, report: dict[str, Any]) -> None:
        try:
            self._send_result(command_id, report)
        except (Unreachable, Refused) as exc:
            self._failed(exc)  # sent with the next poll, even after a restart

    def _send_result(self, command_id: str, report: dict[str, Any]) -> None:
        """Send one result; marked sent once the server has a final answer for it.
        Raises (keeping it owed) when the server is busy or refuses the key."""
        try:
            self.client.report(command_id, report)
        except Refused as exc:
            if exc.status in PERMANENT_BATCH_STATUSES:
                self._send_short_result(command_id, report, exc)
            elif exc.status in DONE_RESULT_STATUSES:
                logger.warning("result of %s not taken (%s): already final there", command_id, exc)
            else:
                raise
        self.ledger.mark_sent(command_id)

    def _send_short_result(self, command_id: str, report: dict[str, Any], exc: Refused) -> None:
        """The full result was refused: the status and why, without the result object."""
        short = {
            "status": report.get("status", FAILED),
            "result": {},
            "exit_code": None,
            "error": f"the server refused the full result: {exc.detail}"[:2000],
            "executed_at": report.get("executed_at"),
        }
        try:
            self.client.report(command_id, short)
        except Refused as again:
            if again.key_refused:
                raise
            logger.error("result of %s refused (%s); giving up on it", command_id, again)

    def confirm_reboot(self) -> None:
        confirmed = self.executor.confirm_reboot(self.ledger)
        if confirmed is not None:
            command_id, outcome = confirmed
            self.ledger.record_result(command_id, outcome.as_report(_iso(self.wall_clock())))

    def start_up(self) -> None:
        """After a (re)start: confirm a pending reboot; report commands a crash cut off."""
        self.confirm_reboot()
        for command_id in self.ledger.recover(_iso(self.wall_clock())):
            logger.error(
                "command %s was running when the agent stopped; reported failed, not run again",
                command_id,
            )

    def _failed(self, exc: Exception) -> None:
        self.last_failure = exc
        self.status.last_error = str(exc)
        if isinstance(exc, Refused) and exc.key_refused:
            if not self.key_refused:
                logger.error(
                    "the server refuses this device's key (%s): pushing and polling stop, "
                    "samples are kept; re-register or rotate the key",
                    exc,
                )
            self.key_refused = str(exc)
        elif isinstance(exc, Refused):
            logger.error("the server refused a request (%s); kept, tried again later", exc)
        else:
            logger.warning("server unreachable or busy: %s", exc)

    # --- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event, status_path: Path | None = None) -> None:
        """Run until `stop` is set (call wake() with it); then keep unsent samples
        in the spool."""
        self.start_up()
        if self.long_poll.configured > 0:
            fork = self.client.fork()  # its own session: requests' is not thread-safe
            self._poll_thread = PollThread(
                lambda wait: fork.pending(limit=1, wait=wait), on_done=self.wake
            )
        try:
            while not stop.is_set():
                self._wake.clear()  # before the step: a wake during it is not lost
                self.step()
                if status_path is not None:
                    self.write_status(status_path)
                wait = min(s.due for s in (self.collecting, self.pushing, self.polling))
                lab_due = self.lab.next_due() if self.lab is not None else None
                if lab_due is not None:
                    wait = min(wait, lab_due)
                self._wake.wait(max(0.0, wait - self.clock()))
        finally:
            if self._poll_thread is not None:
                self._poll_thread.abandon()
                self._poll_thread = None
            self.worker.join(SHUTDOWN_GRACE_SECONDS)  # let a short command record its result
            self.flush()
            if self.lab is not None:
                self.lab.close()

    def step(self) -> None:
        now = self.clock()
        if now >= self.collecting.due:
            self.collect_once()
            self.collecting.advance(now)
        self.collect_lab(now)
        if self.worker.take_finished() and not self.polling.failures:
            self.polling.due = min(self.polling.due, now)  # report it; take the next one
        self._run_job(self.pushing, self.push_once, now)
        self._command_job(now)

    def _command_job(self, now: float) -> None:
        if self._poll_thread is not None:
            if self._poll_thread.busy():
                return  # a long poll is out; its answer wakes the loop
            answer = self._poll_thread.take()
            if answer is not None:
                self._long_poll_answered(answer, now)
        if self.worker.busy():
            if now >= self.polling.due:
                self.polling.advance(now)  # busy: asking for more would only make it wait
            return
        if self._long_polling():
            self._run_job(self.polling, self.start_long_poll, now)
            return
        self._run_job(self.polling, self.poll_once, now)
        if self._long_polling() and not self.polling.failures:
            self.polling.due = now  # that answer advertised long polls: the first goes now

    def _run_job(self, schedule: Schedule, job: Callable[[], bool], now: float) -> None:
        if now < schedule.due:
            return
        if job():
            schedule.advance(now)
            return
        retry_after = getattr(self.last_failure, "retry_after", None)
        schedule.back_off(now, cap=self.config.max_backoff, retry_after=retry_after)

    def write_status(self, path: Path) -> None:
        status = {
            "last_push": self.status.last_push,
            "last_poll": self.status.last_poll,
            "last_error": self.status.last_error,
            "key_refused": self.key_refused or None,
            "spool_depth": self.spool.depth(),
            "spool_dropped": self.spool.dropped(),
            **self.spool.quarantine_summary(),
            "command_running": self.worker.current,
            "long_polling": self.long_poll.on,
            "instance_id": self.instance_id,
        }
        write_private(path, json.dumps(status))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def host_attributes(boot_id: Callable[[], str]) -> dict[str, Any]:
    return {"hostname": socket.gethostname(), "boot_id": boot_id()}
