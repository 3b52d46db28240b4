"""One round of a target's checks on one connection, and what it changes.

(Interface fixed by the lead; implementation by the runner owner.)
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CheckOutcome:
    """What one check gave: its metrics, or the error."""

    name: str
    status: str  # "ok" or "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    # Said when an "ok" check found nothing to read ("no hwmon temperature sensors").
    note: str = ""
    duration_ms: int = 0


@dataclass(frozen=True)
class RoundOutcome:
    """A round: the target's status after it (SshTarget.LastStatus value), the
    error that failed the whole round (connection, host key, circuit), each check."""

    status: str
    error: str = ""
    checks: list[CheckOutcome] = field(default_factory=list)
    offered_fingerprint: str = ""  # set on host_key_mismatch


# --- To be implemented (runner owner) ----------------------------------------------
#
# def ssh_target_check_now(*, target: SshTarget, actor: Actor) -> RoundOutcome
#     All the target's checks, now, synchronously, one connection attempt, within
#     the checks' timeouts; through the same limits; records the outcome like a
#     scheduled round (status, breaker, events, telemetry, last_seen). Used by
#     POST /api/v1/ssh-targets/{device_id}/check and the admin's "Test connection".
