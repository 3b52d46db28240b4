"""HOMEPOT's one date format, ISO-like with the zone: 2026-11-30 14:05:09 UTC.

Read by Django before its own locale formats (settings.FORMAT_MODULE_PATH), so
the admin's lists, detail pages and templates all show times the same way.
"""

DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
MONTH_DAY_FORMAT = "m-d"
YEAR_MONTH_FORMAT = "Y-m"
