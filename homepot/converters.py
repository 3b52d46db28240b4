"""Path converters for ids in URLs.

Django's ``str`` converter takes any character but "/", NUL included, and a
NUL in a query parameter makes PostgreSQL refuse the statement (a 500). An id
never contains a control character, so such a path matches no URL: a 404.
"""

from django.urls import register_converter
from django.urls.converters import StringConverter


class IdConverter(StringConverter):
    """A path segment naming an object (device id): no "/" and no control characters."""

    regex = r"[^/\x00-\x1f\x7f]+"


register_converter(IdConverter, "id")
