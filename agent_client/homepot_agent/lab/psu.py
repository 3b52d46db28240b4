"""A lab power supply over a serial line, speaking newline-terminated SCPI.

* :class:`ScpiDialect` is everything instrument-specific: the command strings
  and how answers read. The common subset of Rigol DP800, Keysight E36xx and
  R&S HMC804x; another dialect is one more small class.
* :class:`Psu` owns the port: one question and its answer at a time (a lock,
  since commands run on the agent's worker thread while the collector reads).
  Any failure (no answer in time, a garbled answer, the adapter unplugged)
  closes the port, so the next call opens it again: a re-plugged instrument
  is found without restarting the agent.
* ``parse`` and ``build`` plug it into the lab framework (``homepot_agent.lab``),
  which reports ``psu.up`` 0/1 and logs once per change of state. The
  collector and the ``psu_*`` commands share one :class:`Psu` per port
  (:func:`shared_psu`), so they never talk over each other on the line.

pyserial is imported only when a port is opened (the agent's ``[lab]`` extra).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


class PsuError(Exception):
    """The instrument did not answer, answered nonsense, or the port is gone."""


class PsuLimitError(PsuError):
    """A setpoint above the agent's own limit: nothing was sent."""


@dataclass(frozen=True)
class PsuSettings:
    """The ``[psu]`` table."""

    port: str = "/dev/ttyUSB0"
    baudrate: int = 9600
    timeout: float = 1.0  # seconds to wait for one answer line
    interval: float = 10.0  # seconds between readings
    # The most the agent ever sets, whatever the server asks: a limit of this
    # device, set by whoever wired the board, that no command can change.
    max_voltage: float = 0.0
    max_current: float = 0.0

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> PsuSettings:
        """Validated settings; ValueError naming the key for a bad one."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown setting")
        settings = cls(**values)
        if not isinstance(settings.port, str) or not settings.port:
            raise ValueError("port: must name the serial device")
        for name in ("baudrate", "timeout", "interval", "max_voltage", "max_current"):
            value = getattr(settings, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name}: {value!r} is not a number")
            # A limit of 0 is allowed (it refuses every setpoint); the rest must be > 0.
            least_ok = value >= 0 if name.startswith("max_") else value > 0
            if not math.isfinite(value) or not least_ok:
                raise ValueError(f"{name}: {value!r} is out of range")
        return settings


class ScpiDialect:
    """The SCPI common subset: queries end in "?", one answer line each."""

    identify = "*IDN?"
    measure_voltage = "MEAS:VOLT?"
    measure_current = "MEAS:CURR?"
    voltage_setpoint = "VOLT?"
    current_limit = "CURR?"
    output_state = "OUTP?"

    def set_voltage(self, volts: float) -> str:
        return f"VOLT {volts:.4f}"

    def set_current(self, amps: float) -> str:
        return f"CURR {amps:.4f}"

    def set_output(self, enabled: bool) -> str:
        return "OUTP ON" if enabled else "OUTP OFF"

    def number(self, answer: str) -> float:
        try:
            value = float(answer)
        except ValueError:
            raise PsuError(f"not a number: {answer[:40]!r}") from None
        if not math.isfinite(value):
            raise PsuError(f"not a finite number: {answer[:40]!r}")
        return value

    def output(self, answer: str) -> bool:
        """Rigol and R&S answer ON/OFF, Keysight 1/0: both are accepted."""
        word = answer.strip().upper()
        if word in ("1", "ON"):
            return True
        if word in ("0", "OFF"):
            return False
        raise PsuError(f"not an output state: {answer[:40]!r}")


class Line(Protocol):
    """What Psu needs of a serial port (pyserial's Serial has it)."""

    def write(self, data: bytes) -> Any: ...
    def readline(self) -> bytes: ...
    def reset_input_buffer(self) -> None: ...
    def close(self) -> None: ...


def open_serial(settings: PsuSettings) -> Line:
    import serial  # the [lab] extra: only when a PSU is configured

    try:
        return serial.Serial(settings.port, settings.baudrate, timeout=settings.timeout)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise PsuError(f"cannot open {settings.port}: {exc}") from None


def _port_errors() -> tuple[type[BaseException], ...]:
    try:
        import serial
    except ImportError:  # pragma: no cover - a test's own Line
        return (OSError,)
    return (serial.SerialException, OSError)


class Psu:
    def __init__(
        self,
        settings: PsuSettings,
        *,
        dialect: ScpiDialect | None = None,
        opener: Callable[[PsuSettings], Line] = open_serial,
    ) -> None:
        self.settings = settings
        self.dialect = dialect or ScpiDialect()
        self.opener = opener
        self._line: Line | None = None
        self._lock = threading.Lock()

    # --- one exchange ------------------------------------------------------------------

    def _port(self) -> Line:
        if self._line is None:
            self._line = self.opener(self.settings)
        return self._line

    def _drop(self) -> None:
        """Close the port after a failure: the next exchange opens it again."""
        line, self._line = self._line, None
        if line is not None:
            try:
                line.close()
            except Exception:  # noqa: BLE001 - already broken; nothing to keep
                pass

    def _send(self, command: str) -> None:
        self._port().write(command.encode("ascii") + b"\n")

    def _ask(self, query: str) -> str:
        line = self._port()
        # An answer that came too late for an earlier question must not be
        # taken as the answer to this one.
        line.reset_input_buffer()
        line.write(query.encode("ascii") + b"\n")
        raw = line.readline()
        if not raw.endswith(b"\n"):
            raise PsuError(f"no answer to {query} within {self.settings.timeout:g}s")
        return raw.decode("ascii", errors="replace").strip()

    def _exchange(self, work: Callable[[], Any]) -> Any:
        with self._lock:
            try:
                return work()
            except PsuError:
                self._drop()
                raise
            except _port_errors() as exc:
                self._drop()
                raise PsuError(f"{self.settings.port}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._drop()

    # --- what the agent asks -----------------------------------------------------------

    def identify(self) -> str:
        return self._exchange(lambda: self._ask(self.dialect.identify))

    def read(self) -> dict[str, float]:
        """Measured and set values, as ``psu.*`` metrics (without ``psu.up``)."""
        return self._exchange(self._read)

    def _read(self) -> dict[str, float]:
        d = self.dialect
        voltage = d.number(self._ask(d.measure_voltage))
        current = d.number(self._ask(d.measure_current))
        return {
            "psu.voltage": voltage,
            "psu.current": current,
            "psu.power": voltage * current,
            "psu.output": 1.0 if d.output(self._ask(d.output_state)) else 0.0,
            "psu.voltage_set": d.number(self._ask(d.voltage_setpoint)),
            "psu.current_limit": d.number(self._ask(d.current_limit)),
        }

    def check_setpoints(self, voltage: float | None, current: float | None) -> None:
        """PsuLimitError if a setpoint is above this device's own limit."""
        limits = (
            ("voltage", voltage, self.settings.max_voltage, "V"),
            ("current", current, self.settings.max_current, "A"),
        )
        for name, value, limit, unit in limits:
            if value is not None and value > limit:
                raise PsuLimitError(
                    f"{name}: {value:g} {unit} is above this device's max_{name} ({limit:g} {unit})"
                )

    def set(self, *, voltage: float | None = None, current: float | None = None) -> dict:
        """Set, then read the setpoints back: the result is what the instrument holds."""
        self.check_setpoints(voltage, current)  # before anything is sent
        return self._exchange(lambda: self._set(voltage, current))

    def _set(self, voltage: float | None, current: float | None) -> dict[str, float]:
        d = self.dialect
        if voltage is not None:
            self._send(d.set_voltage(voltage))
        if current is not None:
            self._send(d.set_current(current))
        held = {
            "voltage_set": d.number(self._ask(d.voltage_setpoint)),
            "current_limit": d.number(self._ask(d.current_limit)),
        }
        for name, asked, key in (
            ("voltage", voltage, "voltage_set"),
            ("current", current, "current_limit"),
        ):
            if asked is not None and not math.isclose(held[key], asked, abs_tol=1e-3):
                raise PsuError(f"{name}: asked for {asked:g}, the instrument holds {held[key]:g}")
        return held

    def switch(self, enabled: bool) -> bool:
        """Switch the output, then read ``OUTP?`` back; the state it reports."""
        return self._exchange(lambda: self._switch(enabled))

    def _switch(self, enabled: bool) -> bool:
        self._send(self.dialect.set_output(enabled))
        state = self.dialect.output(self._ask(self.dialect.output_state))
        if state != enabled:
            raise PsuError(
                f"output: asked for {'on' if enabled else 'off'}, it stayed "
                f"{'on' if state else 'off'}"
            )
        return state


# One Psu per serial port, shared by the collector and the executor.
_SHARED: dict[str, Psu] = {}
_SHARED_LOCK = threading.Lock()


def shared_psu(settings: PsuSettings) -> Psu:
    """The Psu for ``settings.port``; a new one (the old closed) if its settings changed."""
    with _SHARED_LOCK:
        psu = _SHARED.get(settings.port)
        if psu is None or psu.settings != settings:
            if psu is not None:
                psu.close()
            psu = _SHARED[settings.port] = Psu(settings)
        return psu


def parse(table: dict[str, Any]) -> PsuSettings:
    """The ``[psu]`` table (the lab framework's entry point)."""
    return PsuSettings.from_mapping(table)


class PsuSource:
    """The ``psu`` collector as the lab framework runs it: ``read`` raises
    PsuError when the instrument is away, and the framework reports ``psu.up = 0``."""

    name = "psu"

    def __init__(self, psu: Psu) -> None:
        self.psu = psu

    def open(self) -> None:
        """Nothing: the port is opened by the first question (and after every failure)."""

    def read(self) -> dict[str, float]:
        return self.psu.read()

    def close(self) -> None:
        self.psu.close()


def build(settings: PsuSettings, context: Any) -> PsuSource:
    # A test may hand in its own Psu (context.buses["psu"]).
    psu = getattr(context, "buses", {}).get("psu") or shared_psu(settings)
    return PsuSource(psu)
