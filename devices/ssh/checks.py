"""The built-in checks, and the parsers that turn a check's output into metrics.

A metric is named `<prefix>.<key>` and must be a valid telemetry metric name
(letters, digits, '_', '.', ':', '-'; at most 100 characters; not starting with a
digit). The rules for every parser of operators' checks:

- Blank lines, and lines starting with '#', are ignored.
- Keys are sanitised: each run of characters outside [A-Za-z0-9_.:-] becomes one
  '_', and '_' and '.' are trimmed from both ends ("CPU Temp (C)" gives
  "CPU_Temp_C"). Case is kept. A key empty after that, or whose name would be
  too long, is skipped and said in the note.
- A value is a decimal number ("42", "-1.5", "2e3"), nothing else: text, units
  ("12 kB"), booleans ("true"), hex, NaN and infinities are refused. So are values
  beyond +-TELEMETRY_MAX_ABS_VALUE. A refused value skips its key and is said in
  the note; the check stays ok if other values remain.
- A key given twice: the last value wins, and the note says so.
- Output that is not of the parser's shape (a line without its separator, JSON
  that is not an object), non-empty output without a single usable value, and
  more metrics than TELEMETRY_MAX_METRICS_PER_SAMPLE are ParseErrors: the check
  fails with a message quoting a short excerpt.
- Empty output is ok, with no metrics and the note "no output" (except for
  `number`, which promises a number).

The output's size is bounded before it gets here (SSH_MAX_OUTPUT_BYTES).
"""

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from devices.models import SshCheck
from homepot.post_migrate import synced_model

Parser = SshCheck.Parser

# Telemetry metric names (analytics/fields.py; devices does not import analytics).
METRIC_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,99}")
# A plain decimal number: float() alone would take "nan", "inf", "1_000" and " 0x1".
# (Unambiguous: a long run of digits cannot backtrack quadratically.)
NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
NOT_IN_NAME_RE = re.compile(r"[^A-Za-z0-9_.:-]+")
NOT_IN_SENSOR_RE = re.compile(r"[^a-z0-9_]+")
# JSON objects nested deeper than this are refused (names would be too long anyway).
JSON_MAX_DEPTH = 8
EXCERPT_CHARS = 80
NOTE_KEYS_SHOWN = 5


class ParseError(ValueError):
    """The output is not what the check's parser reads; `str()` is for operators."""


@dataclass(frozen=True)
class Parsed:
    metrics: dict[str, float]
    # Why an ok check has no (or fewer) metrics: "no hwmon temperature sensors".
    note: str = ""


@dataclass(frozen=True)
class BuiltinCheck:
    name: str
    command: str
    parser: str
    description: str
    timeout_seconds: int = 10


# Every hwmon temperature as "<chip name>\t<label or tempN>\t<millidegrees>". POSIX
# sh; with no sensor the glob stays unexpanded, nothing is printed, and it exits 0.
HWMON_COMMAND = (
    "for f in /sys/class/hwmon/hwmon*/temp*_input; do "
    '[ -r "$f" ] || continue; '
    'd="${f%/*}"; t="${f##*/}"; t="${t%_input}"; '
    'v="$(cat "$f" 2>/dev/null)" || continue; '
    'n="$(cat "$d/name" 2>/dev/null)"; l="$t"; '
    '[ -r "$d/${t}_label" ] && l="$(cat "$d/${t}_label" 2>/dev/null)"; '
    'printf \'%s\\t%s\\t%s\\n\' "${n:-${d##*/}}" "${l:-$t}" "$v"; '
    "done; true"
)

BUILTIN_CHECKS: dict[str, BuiltinCheck] = {
    check.name: check
    for check in [
        BuiltinCheck(
            name="uptime",
            command="cat /proc/uptime",
            parser=Parser.UPTIME,
            description="Seconds since boot: <prefix>.uptime",
        ),
        BuiltinCheck(
            name="load",
            command="cat /proc/loadavg",
            parser=Parser.LOADAVG,
            description="Load averages: <prefix>.load1, .load5, .load15",
        ),
        BuiltinCheck(
            name="temperatures",
            command=HWMON_COMMAND,
            parser=Parser.HWMON,
            description="Every hwmon temperature sensor in °C: <prefix>.temp.<chip>_<label>",
        ),
        BuiltinCheck(
            name="memory",
            command="cat /proc/meminfo",
            parser=Parser.MEMINFO,
            description=(
                "Memory: <prefix>.mem_total_bytes, .mem_available_bytes, "
                ".mem_used_percent, .swap_used_bytes"
            ),
        ),
    ]
}


# --- Shared rules ------------------------------------------------------------------------


def excerpt(text: str) -> str:
    """A short quote of hostile output for a message: one line, bounded, repr-escaped."""
    text = text.strip()
    short = text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "")
    return repr(short)


def key_sanitise(key: str) -> str:
    return NOT_IN_NAME_RE.sub("_", key.strip()).strip("_.")


def number_parse(text: str) -> float | None:
    """A finite decimal number within the telemetry bound, or None."""
    text = text.strip()
    if not NUMBER_RE.fullmatch(text):
        return None
    value = float(text)  # "1e999" gives inf, refused below
    if not math.isfinite(value) or abs(value) > settings.TELEMETRY_MAX_ABS_VALUE:
        return None
    return value


@dataclass
class _Collected:
    """Metrics gathered under a prefix, with what was skipped and why."""

    prefix: str
    metrics: dict[str, float] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # keys whose value is not a number
    unnamed: list[str] = field(default_factory=list)  # keys that make no valid name
    repeated: list[str] = field(default_factory=list)

    def add(self, key: str, raw: Any) -> None:
        name = metric_name(self.prefix, key)
        if name is None:
            self.unnamed.append(key)
            return
        value = number_parse(raw) if isinstance(raw, str) else _json_number(raw)
        if value is None:
            self.refused.append(key)
            return
        if name in self.metrics:
            self.repeated.append(key)
        self.metrics[name] = value

    def parsed(self, output: str) -> Parsed:
        if len(self.metrics) > settings.TELEMETRY_MAX_METRICS_PER_SAMPLE:
            raise ParseError(
                f"{len(self.metrics)} metrics: a check gives at most "
                f"{settings.TELEMETRY_MAX_METRICS_PER_SAMPLE}."
            )
        if not self.metrics and (self.refused or self.unnamed):
            raise ParseError(f"No numeric value in the output: {excerpt(output)}.")
        notes = [
            _keys_note("not a number, skipped", self.refused),
            _keys_note("no valid metric name, skipped", self.unnamed),
            _keys_note("given more than once, the last value kept", self.repeated),
        ]
        return Parsed(self.metrics, "; ".join(note for note in notes if note))


def _keys_note(what: str, keys: list[str]) -> str:
    if not keys:
        return ""
    shown = ", ".join(excerpt(key) for key in keys[:NOTE_KEYS_SHOWN])
    more = f" and {len(keys) - NOTE_KEYS_SHOWN} more" if len(keys) > NOTE_KEYS_SHOWN else ""
    return f"{what}: {shown}{more}"


def metric_name(prefix: str, key: str) -> str | None:
    sanitised = key_sanitise(key)
    name = f"{prefix}.{sanitised}"
    return name if sanitised and METRIC_NAME_RE.fullmatch(name) else None


def _content_lines(output: str) -> Iterable[str]:
    for line in output.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            yield line


# --- Operators' parsers -------------------------------------------------------------------


def number_output_parse(output: str, prefix: str) -> Parsed:
    if not output.strip():
        raise ParseError("No output: the check promises one number.")
    value = number_parse(output)
    if value is None:
        raise ParseError(f"The output is not one finite number: {excerpt(output)}.")
    return Parsed({prefix: value})


def _separated_parser(separator: str) -> Callable[[str, str], Parsed]:
    def parse(output: str, prefix: str) -> Parsed:
        collected = _Collected(prefix)
        for line in _content_lines(output):
            key, found, value = line.partition(separator)
            if not found:
                raise ParseError(f"A line without {separator.strip()!r}: {excerpt(line)}.")
            collected.add(key, value)
        return collected.parsed(output)

    return parse


key_equals_output_parse = _separated_parser("=")
key_colon_output_parse = _separated_parser(":")


class _Refused:
    """A JSON value that is not a measurement (NaN, Infinity)."""


def _json_number(value: Any) -> float | None:
    # bool is an int in Python, but true is not a measurement.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a double
        return None
    if not math.isfinite(number) or abs(number) > settings.TELEMETRY_MAX_ABS_VALUE:
        return None
    return number


class _JsonObject(list):
    """A JSON object as its (key, value) pairs, in order: a key given twice is
    noticed, not silently merged."""


def json_output_parse(output: str, prefix: str) -> Parsed:
    if not output.strip():
        return Parsed({})
    try:
        document = json.loads(
            output, object_pairs_hook=_JsonObject, parse_constant=lambda _: _Refused()
        )
    except (ValueError, RecursionError):
        raise ParseError(f"The output is not JSON: {excerpt(output)}.") from None
    if not isinstance(document, _JsonObject):
        raise ParseError(f"The output is not a JSON object: {excerpt(output)}.")
    collected = _Collected(prefix)
    _json_flatten(document, "", collected, depth=1)
    return collected.parsed(output)


def _json_flatten(obj: "_JsonObject", path: str, collected: _Collected, depth: int) -> None:
    if depth > JSON_MAX_DEPTH:
        raise ParseError(f"JSON objects nested deeper than {JSON_MAX_DEPTH} levels.")
    for key, value in obj:
        segment = key_sanitise(key)
        if not segment:
            collected.unnamed.append(key)
            continue
        name = f"{path}.{segment}" if path else segment
        if isinstance(value, _JsonObject):
            _json_flatten(value, name, collected, depth + 1)
        else:
            collected.add(name, value)


# --- Built-in checks' parsers ---------------------------------------------------------------


def _fields(output: str, count: int, source: str) -> list[float]:
    values = [number_parse(text) for text in output.split()[:count]]
    if len(values) < count or None in values:
        raise ParseError(f"This is not {source}: {excerpt(output)}.")
    return values  # type: ignore[return-value]


def uptime_output_parse(output: str, prefix: str) -> Parsed:
    (uptime,) = _fields(output, 1, "/proc/uptime")
    return Parsed({f"{prefix}.uptime": uptime})


def loadavg_output_parse(output: str, prefix: str) -> Parsed:
    load1, load5, load15 = _fields(output, 3, "/proc/loadavg")
    return Parsed({f"{prefix}.load1": load1, f"{prefix}.load5": load5, f"{prefix}.load15": load15})


def meminfo_output_parse(output: str, prefix: str) -> Parsed:
    kib = _meminfo_kib(output)
    total = kib.get("MemTotal")
    if not total:
        raise ParseError(f"This is not /proc/meminfo (no MemTotal): {excerpt(output)}.")
    available = kib.get("MemAvailable")
    if available is None:  # kernels before 3.14
        available = sum(kib.get(name, 0.0) for name in ("MemFree", "Buffers", "Cached"))
    available = min(available, total)
    swap_used = max(kib.get("SwapTotal", 0.0) - kib.get("SwapFree", 0.0), 0.0)
    return Parsed(
        {
            f"{prefix}.mem_total_bytes": total * 1024,
            f"{prefix}.mem_available_bytes": available * 1024,
            f"{prefix}.mem_used_percent": round((total - available) / total * 100, 2),
            f"{prefix}.swap_used_bytes": swap_used * 1024,
        }
    )


def _meminfo_kib(output: str) -> dict[str, float]:
    """ "MemTotal:       16316412 kB" lines: the kB values by name."""
    kib = {}
    for line in output.splitlines():
        name, _, rest = line.partition(":")
        words = rest.split()
        if words and words[-1] == "kB":
            value = number_parse(words[0])
            if value is not None and value >= 0:
                kib[name.strip()] = value
    return kib


def hwmon_output_parse(output: str, prefix: str) -> Parsed:
    if not output.strip():
        return Parsed({}, "no hwmon temperature sensors")
    collected = _Collected(f"{prefix}.temp")
    for line in _content_lines(output):
        chip, label, millidegrees = (line.split("\t") + ["", ""])[:3]
        value = number_parse(millidegrees)
        sensor = NOT_IN_SENSOR_RE.sub("_", f"{chip}_{label}".lower()).strip("_")
        # A sensor that read garbage is skipped, the other sensors still count.
        collected.add(sensor, str(value / 1000) if value is not None else "")
    return collected.parsed(output)


PARSERS: dict[str, Callable[[str, str], Parsed]] = {
    Parser.UPTIME: uptime_output_parse,
    Parser.LOADAVG: loadavg_output_parse,
    Parser.HWMON: hwmon_output_parse,
    Parser.MEMINFO: meminfo_output_parse,
    Parser.NUMBER: number_output_parse,
    Parser.KEY_EQUALS: key_equals_output_parse,
    Parser.KEY_COLON: key_colon_output_parse,
    Parser.JSON: json_output_parse,
}


def output_parse(parser: str, output: str, prefix: str) -> Parsed:
    """The metrics in a check's output. ParseError (for operators) when the output is
    not what the parser reads, or the prefix cannot start a metric name."""
    if parser not in PARSERS:
        raise ParseError(f"Unknown parser {parser!r}.")
    if not METRIC_NAME_RE.fullmatch(prefix):
        raise ParseError(f"The metric prefix {prefix!r} is not a valid metric name.")
    parsed = PARSERS[parser](output, prefix)
    if not parsed.metrics and not parsed.note:
        return Parsed({}, "no output" if not output.strip() else "only blank or comment lines")
    return parsed


# --- The built-in rows -----------------------------------------------------------------------


def ssh_checks_builtin_sync(**kwargs: Any) -> None:
    """post_migrate: the built-in checks as rows. Command, parser and description
    come from the code; a timeout or prefix an operator changed is kept."""
    using = kwargs.get("using", "default")
    model = synced_model(kwargs, SshCheck)
    if model is None:
        return
    for check in BUILTIN_CHECKS.values():
        model.objects.using(using).update_or_create(
            name=check.name,
            defaults={
                "builtin": True,
                "command": check.command,
                "parser": check.parser,
                "description": check.description,
            },
            create_defaults={
                "builtin": True,
                "command": check.command,
                "parser": check.parser,
                "description": check.description,
                "timeout_seconds": check.timeout_seconds,
            },
        )
