"""What one delivery attempt came to, whichever the channel's kind."""

from dataclasses import dataclass

ERROR_MAX_CHARS = 500  # NotificationDelivery.last_error


@dataclass(frozen=True)
class AttemptResult:
    delivered: bool
    # Worth another attempt later (connection error, timeout, 5xx, 429, SMTP 4xx).
    retryable: bool = False
    # The HTTP status or SMTP reply code, when the other side answered.
    status_code: int | None = None
    error: str = ""
    # What the receiver asked for (Retry-After), in seconds.
    retry_after_seconds: float | None = None


def delivered(status_code: int | None) -> AttemptResult:
    return AttemptResult(delivered=True, status_code=status_code)


def retryable(
    error: str, status_code: int | None = None, retry_after_seconds: float | None = None
) -> AttemptResult:
    return AttemptResult(
        delivered=False,
        retryable=True,
        status_code=status_code,
        error=error[:ERROR_MAX_CHARS],
        retry_after_seconds=retry_after_seconds,
    )


def refused(error: str, status_code: int | None = None) -> AttemptResult:
    """Permanent: another attempt would be refused the same way."""
    return AttemptResult(delivered=False, status_code=status_code, error=error[:ERROR_MAX_CHARS])
