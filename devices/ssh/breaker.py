"""The circuit breaker of a target: closed, open after SSH_BREAKER_THRESHOLD
failed rounds in a row, half-open (one trial round) after the cool-down.

The state is two columns of the target (consecutive_failures, circuit_opened_at),
so every worker and web process sees the same circuit.
"""

from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings

from devices.models import SshTarget


class Circuit(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def circuit_state(target: SshTarget, now: datetime) -> Circuit:
    if target.circuit_opened_at is None:
        return Circuit.CLOSED
    cooldown = timedelta(seconds=settings.SSH_BREAKER_COOLDOWN_SECONDS)
    return Circuit.OPEN if now < target.circuit_opened_at + cooldown else Circuit.HALF_OPEN
