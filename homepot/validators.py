"""Reusable input bounds shared by every app's serializers.

Dates: the API accepts only years 1970-9999 (UTC). Earlier dates mean a
device clock that was never set, later ones cannot be stored or computed
with (``datetime`` stops at year 9999, so ``end + step`` would raise
OverflowError: a 500 instead of a 400).
"""

from datetime import UTC, datetime
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

MIN_DATETIME = datetime(1970, 1, 1, tzinfo=UTC)
# A day short of datetime.max, so a step or a time zone added later cannot overflow.
MAX_DATETIME = datetime(9999, 12, 31, tzinfo=UTC)
DATETIME_BOUNDS_MESSAGE = "Must be between 1970-01-01 and 9999-12-30 (UTC)."


def validate_datetime_bounds(value: datetime) -> datetime:
    """Refuse a datetime outside years 1970-9999; naive values count as UTC."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        inside = MIN_DATETIME <= aware < MAX_DATETIME
    except OverflowError:  # comparing converts to UTC, which can overflow at the edges
        inside = False
    if not inside:
        raise serializers.ValidationError(DATETIME_BOUNDS_MESSAGE, code="out_of_range")
    return value


@extend_schema_field({"type": "string", "format": "date-time"})
class BoundedDateTimeField(serializers.DateTimeField):
    """DRF's DateTimeField, limited to years 1970-9999.

    DRF converts to the current time zone after parsing, which raises
    OverflowError for 0001-01-01T00:00+01:00; that is reported as out of range.
    """

    def to_internal_value(self, value: Any) -> datetime:
        try:
            parsed = super().to_internal_value(value)
        except OverflowError:
            raise serializers.ValidationError(
                DATETIME_BOUNDS_MESSAGE, code="out_of_range"
            ) from None
        return validate_datetime_bounds(parsed)
