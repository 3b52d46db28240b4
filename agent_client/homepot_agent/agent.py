"""The agent's loop: collect, push, poll and run commands, each on its own schedule.

Everything the loop touches (clock, transport, collectors, executor, spool,
ledger) is passed in, so tests drive it without sleeping.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from homepot_agent.config import AgentConfig
from homepot_agent.spool import Spool, wire_samples
from homepot_agent.transport import ApiClient, Refused, Unreachable

logger = logging.getLogger("homepot_agent")

MAX_BATCH_SAMPLES = 500
MAX_BACKOFF_SECONDS = 300.0
POLL_BOUNDS = (1.0, 600.0)


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

    def back_off(self, now: float, jitter: Callable[[], float] = random.random) -> None:
        """Exponential backoff with jitter after a network failure."""
        self.failures += 1
        delay = min(MAX_BACKOFF_SECONDS, self.interval * 2 ** min(self.failures, 10))
        self.due = now + delay * (0.5 + jitter())


@dataclass
class Status:
    """What `homepot-agent status` shows; written to the state directory."""

    last_push: float | None = None
    last_poll: float | None = None
    last_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Agent:
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
    ) -> None:
        self.config = config
        self.client = client
        self.collect = collect
        self.executor = executor
        self.ledger = ledger
        self.spool = spool
        self.clock = clock
        self.wall_clock = wall_clock
        self.attributes = attributes
        self.buffer: list[tuple[float, dict[str, float]]] = []
        self.status = Status()
        now = clock()
        self.collecting = Schedule(config.collect_interval, now)
        self.pushing = Schedule(config.push_interval, now + config.push_interval)
        self.polling = Schedule(config.poll_interval, now)

    def reconfigure(self, config: AgentConfig, collect: Callable[[], dict[str, float]]) -> None:
        """Apply new settings without a restart (update_config)."""
        self.config = config
        self.collect = collect
        self.collecting.interval = config.collect_interval
        self.pushing.interval = config.push_interval
        self.polling.interval = config.poll_interval

    # --- one step of each job ------------------------------------------------------

    def collect_once(self) -> None:
        self.buffer.append((self.wall_clock(), self.collect()))

    def push_once(self) -> bool:
        """Send the spool (oldest first), then the buffer. False if that failed;
        whatever was not sent then waits in the spool."""
        try:
            self._drain_spool()
            self._send_buffer()
            self.client.heartbeat(
                {
                    **self.attributes(),
                    "spool_depth": self.spool.depth(),
                    "spool_dropped": self.spool.dropped(),
                }
            )
        except (Unreachable, Refused) as exc:
            self.flush()
            self._note_error(exc)
            return False
        self.status.last_push = self.wall_clock()
        return True

    def _send_buffer(self) -> None:
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        batch_id = f"{self.spool.prefix}-m{secrets.token_hex(8)}"
        try:
            self._send(batch_id, batch)
        except (Unreachable, Refused):
            # Keep its id: if the server did store it, the retry is recognised.
            self.spool.add(batch, batch_id=batch_id)
            raise

    def _drain_spool(self) -> None:
        while (batch := self.spool.oldest_batch(MAX_BATCH_SAMPLES)) is not None:
            self._send(batch.batch_id, batch.samples)
            self.spool.remove_batch(batch.batch_id)

    def _send(self, batch_id: str, samples: list[tuple[float, dict[str, float]]]) -> None:
        try:
            self.client.push(batch_id=batch_id, samples=wire_samples(samples))
        except Refused as exc:
            if exc.status in (401, 403):
                raise  # the key: nothing to drop, the operator must act
            # The server will never take this batch: keep the rest flowing.
            logger.error("server refused batch %s (%s); dropping it", batch_id, exc)

    def poll_once(self) -> bool:
        """Send results still owed, then fetch and run pending commands."""
        try:
            for command_id, report in self.ledger.unsent():
                self._report(command_id, report)
            pending = self.client.pending()
        except (Unreachable, Refused) as exc:
            self._note_error(exc)
            return False
        if pending.advised_interval:
            low, high = POLL_BOUNDS
            self.polling.interval = min(high, max(low, pending.advised_interval))
        self.status.last_poll = self.wall_clock()
        for command in pending.commands:
            self.run_command(command)
        return True

    def run_command(self, command: dict[str, Any]) -> None:
        command_id = str(command["command_id"])
        if not self.ledger.claim(command_id):
            self._redelivered(command_id)
            return
        outcome = self.executor.check(command)
        if outcome is None:
            try:
                self.client.ack(self.config.device_id, command_id)
            except Refused as exc:  # canceled meanwhile, or no longer ours to run
                logger.warning("command %s not acknowledged (%s); not running it", command_id, exc)
                return
            except Unreachable as exc:
                self._note_error(exc)
                self.ledger.release(command_id)  # it never started: a redelivery may run it
                return
            outcome = self.executor.execute(command)
        report = outcome.as_report(_iso(self.wall_clock()))
        rebooting = command.get("command_type") == "reboot" and outcome.status == "in_progress"
        if rebooting:  # noted first: a crash right after must still confirm it
            self.ledger.note_reboot(command_id, outcome.result.get("boot_id", ""))
        self.ledger.record_result(command_id, report)
        if rebooting:
            self._try_report(command_id, report)
            failure = self.executor.reboot_now()  # None: the machine is going down
            if failure is not None:
                report = failure.as_report(_iso(self.wall_clock()))
                self.ledger.record_result(command_id, report)
                self._try_report(command_id, report)
            return
        self._try_report(command_id, report)

    def _redelivered(self, command_id: str) -> None:
        """A command this device already took on came again: it is never run twice.
        The server gets the result it missed, or learns the run was interrupted."""
        logger.warning("command %s was delivered again; not running it twice", command_id)
        report = self.ledger.report_of(command_id)
        if report is None:  # the agent stopped while it ran
            report = {
                "status": "failed",
                "result": {},
                "error": "interrupted (agent restart) before its result was recorded; "
                "not run again",
                "executed_at": _iso(self.wall_clock()),
            }
            self.ledger.record_result(command_id, report)
        self._try_report(command_id, report)

    def _try_report(self, command_id: str, report: dict[str, Any]) -> None:
        try:
            self._report(command_id, report)
        except (Unreachable, Refused) as exc:
            self._note_error(exc)  # sent with the next poll, even after a restart

    def _report(self, command_id: str, report: dict[str, Any]) -> None:
        try:
            self.client.report(command_id, report)
        except Refused as exc:
            if exc.status in (401, 403):
                raise  # our key, not the report: keep it to send later
            # 409: the server already has a final state for it (late or repeated report)
            logger.warning("result of %s refused (%s)", command_id, exc)
        self.ledger.mark_sent(command_id)

    def confirm_reboot(self) -> None:
        confirmed = self.executor.confirm_reboot(self.ledger)
        if confirmed is not None:
            command_id, outcome = confirmed
            self.ledger.record_result(command_id, outcome.as_report(_iso(self.wall_clock())))

    def _note_error(self, exc: Exception) -> None:
        self.status.last_error = str(exc)
        if isinstance(exc, Refused) and exc.status in (401, 403):
            logger.error("the server refuses this device's key (%s): re-register or rotate", exc)
        else:
            logger.warning("server unreachable: %s", exc)

    # --- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event, status_path: Path | None = None) -> None:
        """Run until `stop` is set; then keep unsent samples in the spool."""
        self.confirm_reboot()
        try:
            while not stop.is_set():
                self.step()
                if status_path is not None:
                    self.write_status(status_path)
                wait = min(s.due for s in (self.collecting, self.pushing, self.polling))
                stop.wait(max(0.0, wait - self.clock()))
        finally:
            self.flush()

    def step(self) -> None:
        now = self.clock()
        if now >= self.collecting.due:
            self.collect_once()
            self.collecting.advance(now)
        for schedule, job in ((self.pushing, self.push_once), (self.polling, self.poll_once)):
            if now >= schedule.due:
                if job():
                    schedule.advance(now)
                else:
                    schedule.back_off(now)

    def flush(self) -> None:
        if self.buffer:
            self.spool.add(self.buffer)
            self.buffer = []

    def write_status(self, path: Path) -> None:
        status = {
            "last_push": self.status.last_push,
            "last_poll": self.status.last_poll,
            "last_error": self.status.last_error,
            "spool_depth": self.spool.depth(),
            "spool_dropped": self.spool.dropped(),
        }
        path.write_text(json.dumps(status))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def host_attributes(boot_id: Callable[[], str]) -> dict[str, Any]:
    return {"hostname": socket.gethostname(), "boot_id": boot_id()}
