"""The agent's command executor and ledger, against a real (fake) systemctl program."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from homepot_agent.config import AgentConfig
from homepot_agent.executor import Executor, Outcome, cap_text
from homepot_agent.ledger import CommandLedger

FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "{log}"
case "$*" in
  "is-active -- nginx") echo active; exit 0 ;;
  "is-active -- ghost") echo inactive; exit 3 ;;
  "is-active -- nginx ghost") printf 'active\\ninactive\\n'; exit 3 ;;
  "restart -- broken") echo "Job failed" >&2; exit 1 ;;
  "restart -- quiet-fail") exit 5 ;;
  "restart -- chatty")
    i=0
    while [ $i -lt 200 ]; do echo "line $i"; i=$((i + 1)); done
    exit 0 ;;
  "restart -- slow") exec sleep 5 ;;
  *) exit 0 ;;
esac
"""
SERVICES = ["nginx", "ghost", "broken", "quiet-fail", "chatty", "slow"]


class Systemctl:
    """An executable script in tmp_path that logs each call as one line."""

    def __init__(self, tmp_path: Path) -> None:
        self.log = tmp_path / "systemctl.log"
        self.path = tmp_path / "systemctl"
        self.path.write_text(FAKE_SYSTEMCTL.format(log=self.log))
        self.path.chmod(0o755)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def make_executor(
    tmp_path: Path, systemctl: Systemctl | None = None, **settings: Any
) -> tuple[Executor, Systemctl]:
    systemctl = systemctl or Systemctl(tmp_path)
    values: dict[str, Any] = {"allowed_services": SERVICES, "command_timeout": 10.0}
    values.update(settings)
    executor = Executor(AgentConfig(**values), systemctl=str(systemctl.path))
    return executor, systemctl


def command(command_type: str, **payload: Any) -> dict[str, Any]:
    return {"command_id": "c-1", "command_type": command_type, "payload": payload}


# --- allowed commands run, once, from an argument list ---------------------------------


def test_an_allowed_restart_runs_systemctl_once_and_succeeds(tmp_path: Path) -> None:
    executor, systemctl = make_executor(tmp_path)

    outcome = executor.execute(command("restart_service", service="nginx"))

    assert outcome.status == "succeeded"
    assert outcome.exit_code == 0
    assert outcome.result == {"service": "nginx", "action": "restart"}
    assert systemctl.calls() == ["restart -- nginx"]


@pytest.mark.parametrize(("kind", "verb"), [("stop_service", "stop"), ("start_service", "start")])
def test_stop_and_start_pass_their_verb(tmp_path: Path, kind: str, verb: str) -> None:
    executor, systemctl = make_executor(tmp_path)

    assert executor.execute(command(kind, service="nginx")).status == "succeeded"
    assert systemctl.calls() == [f"{verb} -- nginx"]


def test_ping_answers_with_version_and_time_without_running_anything(tmp_path: Path) -> None:
    def no_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ping runs no program")

    executor = Executor(AgentConfig(), run=no_run, clock=lambda: 1234.5, version="9.9")

    outcome = executor.execute(command("ping"))

    assert outcome == Outcome("succeeded", {"pong": True, "agent_version": "9.9", "time": 1234.5})


def test_programs_get_an_argument_list_and_never_a_shell(tmp_path: Path) -> None:
    seen: list[tuple[Any, dict[str, Any]]] = []

    def run(argv: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append((argv, kwargs))
        return subprocess.CompletedProcess(argv, 0, "", "")

    config = AgentConfig(allowed_services=["nginx"], command_timeout=7.0)
    Executor(config, run=run).execute(command("restart_service", service="nginx"))

    [(argv, kwargs)] = seen
    assert argv == ["systemctl", "restart", "--", "nginx"]
    assert kwargs["timeout"] == 7.0
    assert not kwargs.get("shell")


# --- anything else is rejected, and nothing runs ----------------------------------------


def test_a_service_not_on_the_allowlist_is_rejected_and_nothing_runs(tmp_path: Path) -> None:
    executor, systemctl = make_executor(tmp_path)

    outcome = executor.execute(command("restart_service", service="sshd"))

    assert outcome.status == "rejected"
    assert "allowed_services" in outcome.error
    assert systemctl.calls() == []


def test_a_type_not_allowed_on_this_device_is_rejected(tmp_path: Path) -> None:
    executor, systemctl = make_executor(tmp_path, allowed_commands=["ping"])

    outcome = executor.execute(command("restart_service", service="nginx"))

    assert outcome.status == "rejected"
    assert "not allowed" in outcome.error
    assert systemctl.calls() == []


@pytest.mark.parametrize("kind", ["format_disk", "PING", "", None])
def test_an_unknown_type_is_rejected(tmp_path: Path, kind: Any) -> None:
    executor, systemctl = make_executor(tmp_path)

    outcome = executor.execute({"command_id": "c-1", "command_type": kind, "payload": {}})

    assert outcome.status == "rejected"
    assert "Unknown command type" in outcome.error
    assert systemctl.calls() == []


@pytest.mark.parametrize(
    "service",
    ["nginx; reboot", "nginx && reboot", "$(reboot)", "`reboot`", "nginx\n", "--force", "", 42],
)
def test_shell_metacharacters_or_options_as_a_service_are_rejected(
    tmp_path: Path, service: Any
) -> None:
    executor, systemctl = make_executor(tmp_path)

    outcome = executor.execute(command("restart_service", service=service))

    assert outcome.status == "rejected"
    assert "not a systemd unit name" in outcome.error
    assert systemctl.calls() == []


def test_a_payload_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    executor, systemctl = make_executor(tmp_path)

    outcome = executor.check({"command_type": "restart_service", "payload": ["nginx"]})

    assert outcome is not None and outcome.status == "rejected"
    assert systemctl.calls() == []


def test_unexpected_payload_keys_are_rejected(tmp_path: Path) -> None:
    executor, systemctl = make_executor(tmp_path)

    outcome = executor.execute(command("reboot", delay=5))

    assert outcome.status == "rejected"
    assert outcome.error.startswith("delay:")


def test_check_passes_an_allowed_command(tmp_path: Path) -> None:
    executor, systemctl = make_executor(tmp_path)

    assert executor.check(command("service_status", service="nginx")) is None
    assert systemctl.calls() == []


# --- failures, output, timeouts -----------------------------------------------------------


def test_a_failing_exit_is_failed_with_the_exit_code_and_the_error_text(tmp_path: Path) -> None:
    executor, _ = make_executor(tmp_path)

    outcome = executor.execute(command("restart_service", service="broken"))

    assert outcome.status == "failed"
    assert outcome.exit_code == 1
    assert "Job failed" in outcome.error


def test_a_failing_exit_without_stderr_still_says_what_failed(tmp_path: Path) -> None:
    executor, _ = make_executor(tmp_path)

    outcome = executor.execute(command("restart_service", service="quiet-fail"))

    assert (outcome.status, outcome.exit_code) == ("failed", 5)
    assert "exited with code 5" in outcome.error


def test_long_output_is_capped_keeping_the_tail(tmp_path: Path) -> None:
    executor, _ = make_executor(tmp_path, output_max_chars=100)

    outcome = executor.execute(command("restart_service", service="chatty"))

    assert outcome.status == "succeeded"
    assert len(outcome.output) == 100
    assert outcome.output.startswith("[... ")
    assert "characters cut]" in outcome.output
    assert outcome.output.endswith("line 198\nline 199\n")


def test_cap_text_leaves_short_text_alone_and_counts_what_it_cut() -> None:
    assert cap_text("short", 10) == "short"
    text = "x" * 1000 + "END"
    capped = cap_text(text, 60)
    assert len(capped) == 60 and capped.endswith("END")
    cut = int(capped.split()[1])
    assert cut + len(capped.split("\n", 1)[1]) == len(text)


def test_a_command_that_runs_too_long_fails_as_timed_out(tmp_path: Path) -> None:
    executor, _ = make_executor(tmp_path, command_timeout=0.5)

    started = time.monotonic()
    outcome = executor.execute(command("restart_service", service="slow"))

    assert outcome.status == "failed"
    assert "timed out after 0.5s" in outcome.error
    assert outcome.exit_code is None
    assert time.monotonic() - started < 4


def test_a_missing_systemctl_fails_clearly(tmp_path: Path) -> None:
    config = AgentConfig(allowed_services=["nginx"])
    executor = Executor(config, systemctl=str(tmp_path / "no-such-systemctl"))

    outcome = executor.execute(command("restart_service", service="nginx"))

    assert outcome.status == "failed"
    assert "not found" in outcome.error


# --- status queries -----------------------------------------------------------------------


def test_service_status_reports_an_active_service(tmp_path: Path) -> None:
    executor, systemctl = make_executor(tmp_path)

    outcome = executor.execute(command("service_status", service="nginx"))

    assert outcome.status == "succeeded"
    assert outcome.result == {"service": "nginx", "state": "active"}
    assert systemctl.calls() == ["is-active -- nginx"]


def test_an_inactive_service_is_a_succeeded_status_query(tmp_path: Path) -> None:
    executor, _ = make_executor(tmp_path)

    outcome = executor.execute(command("service_status", service="ghost"))

    assert outcome.status == "succeeded"
    assert outcome.result == {"service": "ghost", "state": "inactive"}
    assert outcome.exit_code == 3
    assert outcome.error == ""


def test_list_services_asks_once_for_every_configured_service(tmp_path: Path) -> None:
    executor, systemctl = make_executor(tmp_path, allowed_services=["nginx", "ghost"])

    outcome = executor.execute(command("list_services"))

    assert outcome.status == "succeeded"
    assert outcome.result == {"services": {"nginx": "active", "ghost": "inactive"}}
    assert systemctl.calls() == ["is-active -- nginx ghost"]


def test_list_services_with_none_configured_runs_nothing(tmp_path: Path) -> None:
    executor, systemctl = make_executor(tmp_path, allowed_services=[])

    outcome = executor.execute(command("list_services"))

    assert outcome == Outcome("succeeded", {"services": {}})
    assert systemctl.calls() == []


# --- update_config --------------------------------------------------------------------------


def test_update_config_applies_valid_settings_without_a_restart(tmp_path: Path) -> None:
    applied: list[AgentConfig] = []
    executor = Executor(AgentConfig(), apply_config=applied.append)

    payload = {"push_interval": 60, "enabled_collectors": ["system"]}
    outcome = executor.execute(command("update_config", **payload))

    assert outcome == Outcome("succeeded", {"applied": payload})
    assert executor.config.push_interval == 60.0
    assert executor.config.enabled_collectors == ["system"]
    assert applied == [executor.config]


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        ({"collect_interval": 0}, "collect_interval"),
        ({"poll_interval": "soon"}, "poll_interval"),
        ({"push_interval": "nan"}, "push_interval"),
        ({"enabled_collectors": ["keylogger"]}, "enabled_collectors"),
    ],
)
def test_update_config_with_an_invalid_value_is_rejected_naming_the_key(
    tmp_path: Path, payload: dict[str, Any], key: str
) -> None:
    applied: list[AgentConfig] = []
    before = AgentConfig()
    executor = Executor(before, apply_config=applied.append)

    outcome = executor.execute(command("update_config", **payload))

    assert outcome.status == "rejected"
    assert outcome.error.startswith(key)
    assert executor.config is before and applied == []


@pytest.mark.parametrize(
    "payload",
    [
        {"allowed_commands": ["reboot"]},
        {"allowed_services": ["sshd"]},
        {"server_url": "https://evil.example"},
        {"poll_interval": 5, "command_timeout": 9999},
    ],
)
def test_update_config_cannot_widen_what_the_device_allows(
    tmp_path: Path, payload: dict[str, Any]
) -> None:
    before = AgentConfig(allowed_commands=["ping", "update_config"])
    executor = Executor(before)

    outcome = executor.execute(command("update_config", **payload))

    assert outcome.status == "rejected"
    assert executor.config is before


def test_update_config_that_cannot_be_applied_fails_and_keeps_the_old_settings(
    tmp_path: Path,
) -> None:
    def broken(config: AgentConfig) -> None:
        raise RuntimeError("disk full")

    before = AgentConfig()
    executor = Executor(before, apply_config=broken)

    outcome = executor.execute(command("update_config", poll_interval=5))

    assert outcome.status == "failed"
    assert "disk full" in outcome.error
    assert executor.config is before


# --- the ledger -----------------------------------------------------------------------------


def test_a_command_is_claimed_once_even_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "commands.sqlite3"
    ledger = CommandLedger(path)
    assert ledger.claim("c-1") is True
    assert ledger.claim("c-1") is False
    ledger.close()

    reopened = CommandLedger(path)
    assert reopened.claim("c-1") is False
    assert reopened.claim("c-2") is True
    reopened.close()


def test_results_are_kept_until_sent_even_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "commands.sqlite3"
    ledger = CommandLedger(path)
    for command_id in ("c-1", "c-2", "c-3"):
        ledger.claim(command_id)
    first = Outcome("succeeded", {"pong": True}, 0).as_report("2025-01-01T00:00:00Z")
    ledger.record_result("c-2", first)
    ledger.record_result("c-1", Outcome("failed", {}, 1, error="no").as_report("t"))
    ledger.close()

    ledger = CommandLedger(path)
    assert [(cid, report["status"]) for cid, report in ledger.unsent()] == [
        ("c-2", "succeeded"),
        ("c-1", "failed"),
    ]
    assert ledger.unsent()[0][1] == first
    ledger.mark_sent("c-2")
    ledger.close()

    ledger = CommandLedger(path)
    assert [cid for cid, _ in ledger.unsent()] == ["c-1"]
    ledger.mark_sent("c-1")
    assert ledger.unsent() == []
    ledger.close()


def test_as_report_has_the_fields_the_server_takes() -> None:
    report = Outcome("failed", {"a": 1}, 2, "out", "err").as_report("2025-01-01T00:00:00Z")

    assert report == {
        "status": "failed",
        "result": {"a": 1},
        "exit_code": 2,
        "output": "out",
        "error": "err",
        "executed_at": "2025-01-01T00:00:00Z",
    }


# --- reboot ---------------------------------------------------------------------------------


def _start_reboot(tmp_path: Path, ledger: CommandLedger, systemctl: Systemctl) -> None:
    """What the agent loop does: claim, execute, record in_progress, note, reboot."""
    config = AgentConfig()
    before = Executor(config, systemctl=str(systemctl.path), boot_id=lambda: "boot-a")
    assert ledger.claim("r-1")
    outcome = before.execute(command("reboot"))
    assert outcome == Outcome("in_progress", {"rebooting": True, "boot_id": "boot-a"})
    ledger.record_result("r-1", outcome.as_report("t0"))
    ledger.note_reboot("r-1", outcome.result["boot_id"])
    assert before.reboot_now() is None
    assert systemctl.calls() == ["reboot"]


def test_a_reboot_is_confirmed_by_a_new_boot_id_after_the_restart(tmp_path: Path) -> None:
    path, systemctl = tmp_path / "commands.sqlite3", Systemctl(tmp_path)
    ledger = CommandLedger(path)
    _start_reboot(tmp_path, ledger, systemctl)
    ledger.close()

    ledger = CommandLedger(path)  # the machine came back: a new process, a new boot id
    after = Executor(AgentConfig(), boot_id=lambda: "boot-b")
    confirmed = after.confirm_reboot(ledger)

    assert confirmed is not None
    command_id, outcome = confirmed
    assert command_id == "r-1"
    assert outcome.status == "succeeded"
    assert outcome.result == {
        "rebooted": True,
        "boot_id_before": "boot-a",
        "boot_id_after": "boot-b",
    }
    ledger.record_result(command_id, outcome.as_report("t1"))
    assert ledger.pending_reboot() is None
    assert after.confirm_reboot(ledger) is None
    assert [(cid, r["status"]) for cid, r in ledger.unsent()] == [("r-1", "succeeded")]
    ledger.close()


def test_a_reboot_with_an_unchanged_boot_id_failed(tmp_path: Path) -> None:
    path, systemctl = tmp_path / "commands.sqlite3", Systemctl(tmp_path)
    ledger = CommandLedger(path)
    _start_reboot(tmp_path, ledger, systemctl)
    ledger.close()

    ledger = CommandLedger(path)
    confirmed = Executor(AgentConfig(), boot_id=lambda: "boot-a").confirm_reboot(ledger)

    assert confirmed is not None
    command_id, outcome = confirmed
    assert (command_id, outcome.status) == ("r-1", "failed")
    assert "did not restart" in outcome.error
    ledger.close()


def test_no_pending_reboot_means_nothing_to_confirm(tmp_path: Path) -> None:
    with CommandLedger(tmp_path / "commands.sqlite3") as ledger:
        assert Executor(AgentConfig(), boot_id=lambda: "x").confirm_reboot(ledger) is None


def test_a_reboot_without_a_boot_id_is_not_started(tmp_path: Path) -> None:
    outcome = Executor(AgentConfig(), boot_id=lambda: "").execute(command("reboot"))

    assert outcome.status == "failed"
    assert "boot id" in outcome.error


def test_a_reboot_that_cannot_start_reports_why(tmp_path: Path) -> None:
    executor = Executor(AgentConfig(), reboot_argv=[str(tmp_path / "no-such-program")])

    outcome = executor.reboot_now()

    assert outcome is not None and outcome.status == "failed"
    assert "not found" in outcome.error
