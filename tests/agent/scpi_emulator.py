"""An SCPI power supply on the far end of a real pty pair, in a thread.

The agent opens the pty's slave side by a path, as it would /dev/ttyUSB0: a
symlink the emulator owns, so "unplug and plug back in" (a new pty, the link
pointing at it) is what udev does with a stable name. Every line the
instrument received is kept in ``received``, so a test can show that nothing
was sent.

Behaviour on cue: ``silent`` (reads, never answers), ``garbage`` (answers the
next N queries with junk), ``output_words`` (answers ``OUTP?`` ON/OFF rather
than 1/0), ``unplug()`` / ``plug()``.
"""

from __future__ import annotations

import os
import pty
import select
import threading
import tty
from pathlib import Path

LOAD_OHMS = 10.0  # a resistive load across the output


class ScpiEmulator:
    def __init__(self, link: Path, *, output_words: bool = False) -> None:
        self.link = link
        self.output_words = output_words
        self.received: list[str] = []
        self.voltage = 0.0
        self.current = 1.0
        self.output = False
        self.silent = False
        self.garbage = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._master: int | None = None
        self._slave: int | None = None
        self.plug()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    # --- the cable ---------------------------------------------------------------------

    def plug(self) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)  # no echo, no line editing: a serial line
        with self._lock:
            self._master, self._slave = master, slave
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.link)

    def unplug(self) -> None:
        """The adapter is pulled: the pty goes away, and so does the device path."""
        self.link.unlink(missing_ok=True)
        with self._lock:
            master, slave = self._master, self._slave
            self._master = self._slave = None
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.unplug()

    def sent(self, prefix: str = "") -> list[str]:
        """The commands (not queries) received, optionally only those starting with prefix."""
        return [c for c in self.received if not c.endswith("?") and c.startswith(prefix)]

    # --- the instrument ----------------------------------------------------------------

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            master = self._master
            if master is None:
                self._stop.wait(0.01)
                continue
            try:
                ready, _, _ = select.select([master], [], [], 0.02)
                if not ready:
                    continue
                chunk = os.read(master, 1024)
            except (OSError, ValueError):  # unplugged meanwhile
                buffer = b""
                self._stop.wait(0.01)
                continue
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                answer = self._handle(raw.decode("ascii", errors="replace").strip())
                if answer is not None:
                    try:
                        os.write(master, answer.encode("ascii") + b"\n")
                    except OSError:
                        pass

    def _handle(self, line: str) -> str | None:
        if not line:
            return None
        self.received.append(line)
        answer = self._answer(line.upper())
        if answer is None or self.silent:
            return None
        if self.garbage:
            self.garbage -= 1
            return "\x07#?ERR garbage"
        return answer

    def _answer(self, command: str) -> str | None:
        word, _, argument = command.partition(" ")
        if word == "VOLT":
            self.voltage = float(argument)
        elif word == "CURR":
            self.current = float(argument)
        elif word == "OUTP":
            self.output = argument in ("ON", "1")
        queries = {
            "*IDN?": "HOMEPOT,EMU-PSU,0001,1.0",
            "MEAS:VOLT?": f"{self._measured()[0]:.4f}",
            "MEAS:CURR?": f"{self._measured()[1]:.4f}",
            "VOLT?": f"{self.voltage:.4f}",
            "CURR?": f"{self.current:.4f}",
            "OUTP?": self._output_answer(),
        }
        return queries.get(command)

    def _measured(self) -> tuple[float, float]:
        if not self.output:
            return 0.0, 0.0
        # Constant voltage until the load would draw more than the limit.
        current = min(self.voltage / LOAD_OHMS, self.current)
        return current * LOAD_OHMS, current

    def _output_answer(self) -> str:
        if self.output_words:
            return "ON" if self.output else "OFF"
        return "1" if self.output else "0"
