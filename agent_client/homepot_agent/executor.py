"""Run the commands the server sends, within this device's own limits.

* Only command types on the agent's allowlist run; service names must match a
  systemd unit name and be on the configured list. Anything else comes back
  ``rejected`` and nothing is run.
* Programs run from argument lists (never a shell), with stdin closed, a
  timeout, and output capped to ``output_max_chars`` (the tail is kept).
* ``update_config`` may change only the intervals and the collectors: the
  allowlists and the server address are never changed remotely.
* ``reboot`` answers ``in_progress`` with the current boot id; the caller notes
  it in the ledger and calls :meth:`Executor.reboot_now`. After the restart,
  :meth:`Executor.confirm_reboot` compares boot ids.
* ``psu_set`` / ``psu_output`` need a ``[psu]`` table; a setpoint above its
  ``max_voltage`` / ``max_current`` is refused before anything is sent, and the
  result carries what the instrument reads back.
* ``arp_update`` runs ``ip neigh replace`` (it needs CAP_NET_ADMIN) and is off
  unless the config's ``allowed_commands`` names it.
"""

from __future__ import annotations

import ipaddress
import math
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homepot_agent import __version__, contract
from homepot_agent.collectors import boot_id as read_boot_id
from homepot_agent.config import ALL_COMMANDS, AgentConfig, ConfigError, config_from_mapping

if TYPE_CHECKING:  # pragma: no cover
    from homepot_agent.lab.psu import Psu
    from homepot_agent.ledger import CommandLedger

SUCCEEDED = "succeeded"
FAILED = "failed"
REJECTED = "rejected"
IN_PROGRESS = "in_progress"

# The service-name pattern and each type's payload fields: the server's contract.
SERVICE_NAME = contract.SERVICE_NAME
PAYLOAD_KEYS: dict[str, tuple[str, ...]] = contract.payload_keys()
SERVICE_VERBS = {
    "restart_service": "restart",
    "stop_service": "stop",
    "start_service": "start",
}
SERVICE_COMMANDS = {*SERVICE_VERBS, "service_status"}
# The only settings the server may change; never the allowlists or server_url.
REMOTE_SETTINGS = ("collect_interval", "push_interval", "poll_interval", "enabled_collectors")
# What this agent implements, as the contract describes it: command type ->
# payload fields. contract_problems() compares it with contract.json.
IMPLEMENTED: dict[str, tuple[str, ...]] = {
    "ping": (),
    "reboot": (),
    "list_services": (),
    "update_config": REMOTE_SETTINGS,
    **{name: ("service",) for name in SERVICE_COMMANDS},
    "psu_set": ("voltage", "current"),
    "psu_output": ("enabled",),
    "arp_update": ("ip", "mac", "interface"),
}
PSU_COMMANDS = {"psu_set", "psu_output"}
_ARP_FIELDS = contract.CONTRACT["command_types"].get("arp_update", {}).get("payload", {})
# The server's patterns for a MAC address and an interface name (contract.json).
MAC_ADDRESS = contract.full_match(_ARP_FIELDS.get("mac", {}).get("pattern", r"(?!)"))
INTERFACE_NAME = contract.full_match(_ARP_FIELDS.get("interface", {}).get("pattern", r"(?!)"))


def psu_from_config(config: AgentConfig) -> Psu | None:
    """The shared driver for the ``[psu]`` table, or None without one."""
    table = config.tables.get("psu")
    if table is None:
        return None
    from homepot_agent.lab.psu import parse, shared_psu  # lab code only when used

    return shared_psu(parse(table))


def contract_problems(payload_keys: dict[str, tuple[str, ...]] = PAYLOAD_KEYS) -> list[str]:
    """Where the server's contract and what this agent implements disagree."""
    problems = []
    for name in sorted(set(payload_keys) | set(IMPLEMENTED)):
        if name not in IMPLEMENTED:
            problems.append(f"{name}: in the contract, not implemented by the agent")
        elif name not in payload_keys:
            problems.append(f"{name}: implemented by the agent, not in the contract")
        elif set(payload_keys[name]) != set(IMPLEMENTED[name]):
            problems.append(
                f"{name}: the contract's payload {sorted(payload_keys[name])}, "
                f"the agent's {sorted(IMPLEMENTED[name])}"
            )
    return problems


@dataclass(frozen=True)
class Outcome:
    status: str  # "succeeded" | "failed" | "rejected" | "in_progress" (reboot only)
    result: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    output: str = ""
    error: str = ""

    def as_report(self, executed_at: str) -> dict[str, Any]:
        return {
            "status": self.status,
            "result": self.result,
            "exit_code": self.exit_code,
            "output": self.output,
            "error": self.error,
            "executed_at": executed_at,
        }


def cap_text(text: str, limit: int) -> str:
    """At most `limit` characters: the tail, after a note of how much was cut."""
    if len(text) <= limit:
        return text
    keep, cut = limit, len(text) - limit
    for _ in range(3):  # the note's length depends on the number in it
        note = f"[... {cut} characters cut]\n"
        keep = limit - len(note)
        cut = len(text) - keep
    if keep <= 0:
        return text[-limit:] if limit > 0 else ""
    return note + text[-keep:]


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value or ""


def _rejected(reason: str) -> Outcome:
    return Outcome(REJECTED, {}, error=reason)


class Executor:
    def __init__(
        self,
        config: AgentConfig,
        *,
        run: Callable[..., Any] = subprocess.run,
        systemctl: str = "systemctl",
        reboot_argv: list[str] | None = None,
        boot_id: Callable[[], str] = read_boot_id,
        apply_config: Callable[[AgentConfig], None] = lambda c: None,
        clock: Callable[[], float] = time.time,
        version: str = __version__,
        ip: str = "ip",
        psu: Callable[[AgentConfig], Psu | None] = psu_from_config,
    ) -> None:
        self.config = config
        self.run = run
        self.systemctl = systemctl
        # Through the same systemctl: a test's fake never reboots the test machine.
        self.reboot_argv = list(reboot_argv) if reboot_argv else [systemctl, "reboot"]
        self.boot_id = boot_id
        self.apply_config = apply_config
        self.clock = clock
        self.version = version
        self.ip = ip
        self.psu_for = psu

    # --- policy: what may run ----------------------------------------------------------

    def check(self, command: dict[str, Any]) -> Outcome | None:
        """None if the command may run; else a ``rejected`` Outcome saying why."""
        if not isinstance(command, dict):
            return _rejected("The command is not an object.")
        kind = command.get("command_type")
        if not isinstance(kind, str) or kind not in ALL_COMMANDS:
            return _rejected(f"Unknown command type {kind!r}.")
        if kind not in self.config.allowed_commands:
            return _rejected(f"Command type {kind!r} is not allowed on this device.")
        payload = command.get("payload")
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            return _rejected("payload: not an object.")
        unexpected = sorted(set(payload) - set(PAYLOAD_KEYS[kind]), key=str)
        if unexpected:
            return _rejected(f"{unexpected[0]}: not accepted by {kind} on this device.")
        if kind in SERVICE_COMMANDS:
            return self._check_service(payload.get("service"))
        if kind == "update_config":
            return self._check_settings(payload)
        if kind == "psu_set":
            return self._check_psu_set(payload)
        if kind == "psu_output":
            return self._check_psu_output(payload)
        if kind == "arp_update":
            return self._check_arp(payload)
        return None

    def _psu(self) -> Psu | None:
        try:
            return self.psu_for(self.config)
        except ValueError:  # a bad [psu] table stops the agent at start; not here
            return None

    def _check_psu_set(self, payload: dict[str, Any]) -> Outcome | None:
        if not payload:
            return _rejected("payload: name voltage, current or both")
        for name, value in payload.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return _rejected(f"{name}: {value!r} is not a number")
            if not math.isfinite(value) or value < 0:
                return _rejected(f"{name}: {value!r} must be a finite number >= 0")
        psu = self._psu()
        if psu is None:
            return _rejected("No [psu] is configured on this device.")
        from homepot_agent.lab.psu import PsuLimitError

        try:
            psu.check_setpoints(payload.get("voltage"), payload.get("current"))
        except PsuLimitError as exc:
            return _rejected(str(exc))
        return None

    def _check_psu_output(self, payload: dict[str, Any]) -> Outcome | None:
        if not isinstance(payload.get("enabled"), bool):
            return _rejected(f"enabled: {payload.get('enabled')!r} is not true or false")
        if self._psu() is None:
            return _rejected("No [psu] is configured on this device.")
        return None

    def _check_arp(self, payload: dict[str, Any]) -> Outcome | None:
        ip, mac, interface = (payload.get(k) for k in ("ip", "mac", "interface"))
        try:
            ipaddress.ip_address(ip if isinstance(ip, str) else "")
        except ValueError:
            return _rejected(f"ip: {ip!r} is not an IPv4 or IPv6 address")
        if not isinstance(mac, str) or not MAC_ADDRESS.fullmatch(mac):
            return _rejected(f"mac: {mac!r} is not a MAC address")
        if not isinstance(interface, str) or not INTERFACE_NAME.fullmatch(interface):
            return _rejected(f"interface: {interface!r} is not a network interface name")
        return None

    def _check_service(self, service: Any) -> Outcome | None:
        if not isinstance(service, str) or not SERVICE_NAME.fullmatch(service):
            return _rejected(f"service: {service!r} is not a systemd unit name.")
        if service not in self.config.allowed_services:
            return _rejected(f"service: {service!r} is not in this device's allowed_services.")
        return None

    def _check_settings(self, payload: dict[str, Any]) -> Outcome | None:
        try:
            self._new_config(payload)
        except ConfigError as exc:
            return _rejected(str(exc))
        return None

    def _new_config(self, payload: dict[str, Any]) -> AgentConfig:
        if not payload:
            raise ConfigError("payload: name at least one setting to change")
        new = config_from_mapping(payload, base=self.config)
        for name in ("collect_interval", "push_interval", "poll_interval"):
            if not math.isfinite(getattr(new, name)):
                raise ConfigError(f"{name}: must be a finite number")
        return new

    # --- running -----------------------------------------------------------------------

    def execute(self, command: dict[str, Any]) -> Outcome:
        """check(), then run the command; never raises for a failing program."""
        refused = self.check(command)
        if refused is not None:
            return refused
        kind = command["command_type"]
        payload = command.get("payload") or {}
        if kind == "ping":
            return self._ping()
        if kind == "reboot":
            return self._reboot()
        if kind in SERVICE_VERBS:
            return self._service_action(SERVICE_VERBS[kind], payload["service"])
        if kind == "service_status":
            return self._service_status(payload["service"])
        if kind == "list_services":
            return self._list_services()
        if kind == "psu_set":
            return self._psu_set(payload)
        if kind == "psu_output":
            return self._psu_output(payload["enabled"])
        if kind == "arp_update":
            return self._arp_update(payload["ip"], payload["mac"], payload["interface"])
        return self._update_config(payload)

    def _ping(self) -> Outcome:
        return Outcome(
            SUCCEEDED, {"pong": True, "agent_version": self.version, "time": self.clock()}
        )

    def _service_action(self, verb: str, service: str) -> Outcome:
        result = {"service": service, "action": verb}
        return self._call([self.systemctl, verb, "--", service], result)

    def _service_status(self, service: str) -> Outcome:
        """The unit's state. ``is-active`` exits non-zero for every state but
        "active"; that still answers the question, so it is ``succeeded`` with
        the state. Only no state at all (systemctl itself failed) is ``failed``."""
        outcome = self._run([self.systemctl, "is-active", "--", service], {"service": service})
        states = outcome.output.split()
        if outcome.exit_code is None or not states:
            return _explained(outcome)
        return _with(outcome, SUCCEEDED, {"service": service, "state": states[0]})

    def _list_services(self) -> Outcome:
        """One ``is-active`` call for all configured services (one state a line)."""
        names = list(self.config.allowed_services)
        if not names:
            return Outcome(SUCCEEDED, {"services": {}})
        outcome = self._run([self.systemctl, "is-active", "--", *names], {})
        states = outcome.output.split()
        if outcome.exit_code is None:
            return outcome
        if len(states) != len(names):
            error = outcome.error or f"expected {len(names)} states, got {len(states)}"
            return _with(outcome, FAILED, {}, error)
        return _with(outcome, SUCCEEDED, {"services": {n: states[i] for i, n in enumerate(names)}})

    def _update_config(self, payload: dict[str, Any]) -> Outcome:
        new = self._new_config(payload)  # check() passed: valid
        try:
            self.apply_config(new)
        except Exception as exc:  # reported; the agent carries on
            return Outcome(FAILED, {}, error=f"could not apply the settings: {exc}")
        self.config = new
        return Outcome(SUCCEEDED, {"applied": dict(payload)})

    # --- lab -------------------------------------------------------------------------

    def _psu_set(self, payload: dict[str, Any]) -> Outcome:
        from homepot_agent.lab.psu import PsuError

        psu = self._psu()
        assert psu is not None  # check() passed
        try:
            held = psu.set(voltage=payload.get("voltage"), current=payload.get("current"))
        except PsuError as exc:
            return Outcome(FAILED, {}, error=f"psu: {exc}")
        return Outcome(SUCCEEDED, {"requested": dict(payload), **held})

    def _psu_output(self, enabled: bool) -> Outcome:
        from homepot_agent.lab.psu import PsuError

        psu = self._psu()
        assert psu is not None  # check() passed
        try:
            state = psu.switch(enabled)
        except PsuError as exc:
            return Outcome(FAILED, {}, error=f"psu: {exc}")
        return Outcome(SUCCEEDED, {"output": state})

    def _arp_update(self, ip: str, mac: str, interface: str) -> Outcome:
        """``ip neigh replace``, then the entry as the kernel now holds it."""
        where = {"ip": ip, "mac": mac, "interface": interface}
        argv = [
            self.ip,
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "dev",
            interface,
            "nud",
            "permanent",
        ]
        replaced = self._call(argv, where)
        if replaced.status != SUCCEEDED:
            return replaced
        shown = self._run([self.ip, "neigh", "show", ip, "dev", interface], where)
        entry = shown.output.strip()
        if shown.status != SUCCEEDED or not entry:
            return _with(shown, FAILED, where, shown.error or "no neighbour entry after the update")
        return _with(shown, SUCCEEDED, {**where, "entry": entry})

    # --- reboot ------------------------------------------------------------------------

    def _reboot(self) -> Outcome:
        boot_id = self.boot_id()
        if not boot_id:
            return Outcome(FAILED, {}, error="no boot id here: a reboot could not be confirmed")
        return Outcome(IN_PROGRESS, {"rebooting": True, "boot_id": boot_id})

    def reboot_now(self) -> Outcome | None:
        """Start the reboot. None if it is under way; a ``failed`` Outcome if not."""
        outcome = self._call(self.reboot_argv, {"rebooting": True})
        return None if outcome.status == SUCCEEDED else outcome

    def confirm_reboot(self, ledger: CommandLedger) -> tuple[str, Outcome] | None:
        """After a restart: the pending reboot's result, judged by the boot id."""
        pending = ledger.pending_reboot()
        if pending is None:
            return None
        command_id, before = pending
        after = self.boot_id()
        ids = {"boot_id_before": before, "boot_id_after": after}
        if before and after and after != before:
            return command_id, Outcome(SUCCEEDED, {"rebooted": True, **ids})
        error = "the machine did not restart (the boot id is unchanged)"
        if not after:
            error = "no boot id to confirm the reboot with"
        return command_id, Outcome(FAILED, {"rebooted": False, **ids}, error=error)

    # --- one program -------------------------------------------------------------------

    def _call(self, argv: Sequence[str], result: dict[str, Any]) -> Outcome:
        """Run argv: exit 0 is ``succeeded``, anything else ``failed`` with a reason."""
        return _explained(self._run(argv, result))

    def _run(self, argv: Sequence[str], result: dict[str, Any]) -> Outcome:
        """Run argv (a list: never a shell) with stdin closed, a timeout, capped output."""
        timeout = self.config.command_timeout
        try:
            done = self.run(
                list(argv),
                timeout=timeout,
                capture_output=True,
                text=True,
                errors="replace",
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            error = f"{argv[0]}: timed out after {timeout:g}s"
            return self._capped(FAILED, result, None, _text(exc.output), error)
        except FileNotFoundError:
            return Outcome(FAILED, result, error=f"{argv[0]}: program not found")
        except OSError as exc:
            return Outcome(FAILED, result, error=f"{argv[0]}: could not run it ({exc})")
        status = SUCCEEDED if done.returncode == 0 else FAILED
        output, error = _text(done.stdout), _text(done.stderr)
        return self._capped(status, result, done.returncode, output, error)

    def _capped(
        self, status: str, result: dict[str, Any], code: int | None, output: str, error: str
    ) -> Outcome:
        limit = self.config.output_max_chars
        return Outcome(status, result, code, cap_text(output, limit), cap_text(error, limit))


def _explained(outcome: Outcome) -> Outcome:
    """A failed exit with nothing on stderr still says what failed."""
    if outcome.status != FAILED or outcome.error.strip():
        return outcome
    return _with(outcome, FAILED, outcome.result, f"exited with code {outcome.exit_code}")


def _with(
    outcome: Outcome, status: str, result: dict[str, Any], error: str | None = None
) -> Outcome:
    error = outcome.error if error is None else error
    return Outcome(status, result, outcome.exit_code, outcome.output, error)
