"""JSON request bodies that the database and Python can always take.

Python's json module accepts what PostgreSQL and the rest of the stack
cannot: NUL characters (refused by PostgreSQL text and jsonb), lone UTF-16
surrogates (not encodable as UTF-8), integers of any length (bigint is 64
bits; a 5,000-digit one costs CPU to convert), floats that overflow to
Infinity (not JSON, refused by jsonb), and nesting deep enough to exhaust the
recursion limit. Each of these is a 400 here, naming the problem, instead of
a 500 later. The depth is also checked by homepot.middleware before any
authentication work, on the raw bytes (json_too_deep).
"""

import json
import math
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Every byte but quotes and brackets, deleted to find the nesting (UTF-8 never
# uses ASCII bytes inside a multi-byte character, so bytes are safe to scan).
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
# A lone surrogate: a high one not followed by a low one, or a low one not after a high one.
_LONE_SURROGATE = re.compile(
    r"[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]"
)


class JsonRefused(ParseError):
    """A well-formed JSON body with a value the server cannot take."""


def json_too_deep(raw: bytes, limit: int) -> bool:
    """True if arrays and objects nest deeper than limit (the body itself is level 1).

    Linear, in C-speed bytes operations, and without recursion, so it is safe
    and cheap on any input, even malformed (about 3 ms for a 1 MB batch)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # the common case: not even that many brackets in all
    # Escaped backslashes first, then escaped quotes: what is left of a string
    # is its two quotes and any brackets it contains.
    skeleton = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    # Adjacent quotes are an empty string or two strings with nothing between:
    # dropping them keeps what is inside and outside strings as it was.
    skeleton = skeleton.replace(b'""', b"")
    if b'"' in skeleton:
        skeleton = b"".join(skeleton.split(b'"')[::2])  # the parts outside strings
    depth = 0
    for byte in skeleton:
        if byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


_OPENERS = frozenset(b"[{")


def _int64(literal: str) -> int:
    # Length first: never convert a 400-digit literal just to refuse it.
    if len(literal) > 20 or not INT64_MIN <= (value := int(literal)) <= INT64_MAX:
        raise JsonRefused("Integers must fit in 64 signed bits.", code="out_of_range")
    return value


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise JsonRefused(f"Number {literal[:40]} is too large.", code="out_of_range")
    return value


def _refuse_constant(name: str) -> float:
    raise JsonRefused(f"{name} is not valid JSON.")


def _check_strings(value: Any) -> None:
    """Refuse NUL and lone surrogates in any key or string, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_string(key)
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def _check_string(text: str) -> None:
    if "\x00" in text:
        raise JsonRefused("Strings must not contain NUL characters.", code="invalid_string")
    if _LONE_SURROGATE.search(text):
        raise JsonRefused("Strings must not contain lone surrogates.", code="invalid_string")


def parse_json_body(raw: bytes, encoding: str, *, lenient: bool = False) -> Any:
    """Parse a request body. lenient: NaN, Infinity and overflowing floats
    get through, for fields that refuse them by name (telemetry values)."""
    try:
        text = raw.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        raise ParseError(f"The body is not valid {encoding}.") from None
    if json_too_deep(raw, settings.API_JSON_MAX_DEPTH):
        raise JsonRefused(
            f"JSON nested deeper than {settings.API_JSON_MAX_DEPTH} levels.", code="too_deep"
        )
    parse_float: Callable[[str], float] = float if lenient else _finite_float
    try:
        data = json.loads(
            text,
            parse_int=_int64,
            parse_float=parse_float,
            parse_constant=float if lenient else _refuse_constant,
        )
    except JsonRefused:
        raise
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"JSON parse error - {exc}") from None
    # NUL and surrogates can only arrive as \u escapes: raw ones are not valid
    # JSON or not valid UTF-8. Without any escape there is nothing to look for.
    if "\\u" in text:
        _check_strings(data)
    return data


class SafeJSONParser(JSONParser):
    """DRF's JSON parser with the checks above."""

    lenient = False

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read() if stream is not None else b""
        return parse_json_body(raw, encoding, lenient=self.lenient)


class LenientJSONParser(SafeJSONParser):
    """Lets NaN, Infinity and overflowing numbers through, so validation can
    refuse them naming the field instead of failing the whole body."""

    lenient = True


def _check_form(data: Any) -> None:
    for key, values in data.lists():
        _check_string(key)
        for value in values:
            if isinstance(value, str):
                _check_string(value)


class SafeFormParser(FormParser):
    """Form bodies: the same refusal of NUL and lone surrogates as JSON
    (a DictField fed from a form would carry them into a JSON column)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        _check_form(data)
        return data


class SafeMultiPartParser(MultiPartParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        parsed = super().parse(stream, media_type, parser_context)
        _check_form(parsed.data)
        return parsed
