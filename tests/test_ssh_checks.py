"""The built-in checks run on the real sshd's host, and every parser with good,
empty, hostile and huge output."""

import json
from pathlib import Path

import pytest

from devices.models import SshCheck
from devices.ssh.checks import (
    BUILTIN_CHECKS,
    HWMON_COMMAND,
    PARSERS,
    Parsed,
    ParseError,
    output_parse,
    ssh_checks_builtin_sync,
)
from devices.ssh.transport import SshSession
from tests.sshd import SshServer

MAX_OUTPUT = 65_536


def builtin_run(session: SshSession, name: str, command: str | None = None) -> Parsed:
    check = BUILTIN_CHECKS[name]
    result = session.run(
        command or check.command, timeout=check.timeout_seconds, max_output=MAX_OUTPUT
    )
    assert result.exit_status == 0, result.stderr
    return output_parse(check.parser, result.stdout, "wet")


# --- The built-in checks on a real host --------------------------------------------------


def test_uptime_is_read_from_the_host(ssh_session: SshSession):
    parsed = builtin_run(ssh_session, "uptime")

    assert set(parsed.metrics) == {"wet.uptime"}
    assert parsed.metrics["wet.uptime"] > 0


def test_load_is_read_from_the_host(ssh_session: SshSession):
    parsed = builtin_run(ssh_session, "load")

    assert set(parsed.metrics) == {"wet.load1", "wet.load5", "wet.load15"}
    assert all(value >= 0 for value in parsed.metrics.values())


def test_memory_is_read_from_the_host(ssh_session: SshSession):
    metrics = builtin_run(ssh_session, "memory").metrics

    assert metrics["wet.mem_total_bytes"] > 0
    assert 0 <= metrics["wet.mem_available_bytes"] <= metrics["wet.mem_total_bytes"]
    assert 0 <= metrics["wet.mem_used_percent"] <= 100
    assert metrics["wet.swap_used_bytes"] >= 0


def test_temperatures_are_ok_with_or_without_hwmon_on_this_host(ssh_session: SshSession):
    parsed = builtin_run(ssh_session, "temperatures")

    if parsed.metrics:
        assert all(name.startswith("wet.temp.") for name in parsed.metrics)
        assert all(-60 < value < 200 for value in parsed.metrics.values())
    else:
        assert parsed.note == "no hwmon temperature sensors"


def hwmon_chip(root: Path, index: int, name: str, sensors: dict[str, tuple[str | None, str]]):
    chip = root / f"hwmon{index}"
    chip.mkdir(parents=True)
    (chip / "name").write_text(name + "\n")
    for sensor, (label, value) in sensors.items():
        (chip / f"{sensor}_input").write_text(value + "\n")
        if label is not None:
            (chip / f"{sensor}_label").write_text(label + "\n")


def test_the_temperature_command_reads_every_hwmon_sensor(ssh_session: SshSession, sshd: SshServer):
    # The built-in command, pointed at a hwmon tree the ssh user can read.
    root = sshd.workdir / "hwmon-tree"
    hwmon_chip(
        root, 0, "coretemp", {"temp1": ("Package id 0", "45000"), "temp2": ("Core 0", "43500")}
    )
    hwmon_chip(root, 1, "nvme", {"temp1": ("Composite", "38850"), "temp2": (None, "-5000")})
    hwmon_chip(root, 2, "acpitz", {"temp1": (None, "27800")})
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    # A sensor that cannot be read (the kernel answers EIO) is left out.
    unreadable = root / "hwmon2" / "temp2_input"
    unreadable.mkdir()

    parsed = builtin_run(
        ssh_session, "temperatures", HWMON_COMMAND.replace("/sys/class/hwmon", str(root))
    )

    assert parsed.metrics == {
        "wet.temp.coretemp_package_id_0": 45.0,
        "wet.temp.coretemp_core_0": 43.5,
        "wet.temp.nvme_composite": 38.85,
        "wet.temp.nvme_temp2": -5.0,
        "wet.temp.acpitz_temp1": 27.8,
    }


def test_the_temperature_command_says_nothing_and_succeeds_without_sensors(
    ssh_session: SshSession, sshd: SshServer
):
    command = HWMON_COMMAND.replace("/sys/class/hwmon", str(sshd.workdir / "no-such-dir"))

    result = ssh_session.run(command, timeout=5, max_output=MAX_OUTPUT)

    assert (result.exit_status, result.stdout, result.stderr) == (0, "", "")
    assert output_parse("hwmon", result.stdout, "wet") == Parsed({}, "no hwmon temperature sensors")


# --- The built-in parsers with hostile output ---------------------------------------------


@pytest.mark.parametrize(
    "parser, output",
    [
        ("uptime", ""),
        ("uptime", "nan 12.0\n"),
        ("uptime", "up 3 days"),
        ("loadavg", "0.1 0.2\n"),
        ("loadavg", "0.1 inf 0.3 1/2 3\n"),
        ("meminfo", "SwapTotal: 0 kB\n"),
        ("meminfo", "MemTotal: 0 kB\n"),
        ("meminfo", "MemTotal: lots kB\n"),
        ("uptime", "9" * MAX_OUTPUT),
    ],
)
def test_builtin_parsers_refuse_output_that_is_not_their_file(parser: str, output: str):
    with pytest.raises(ParseError):
        output_parse(parser, output, "wet")


def test_meminfo_without_memavailable_uses_free_buffers_and_cached():
    output = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n"

    metrics = output_parse("meminfo", output, "wet").metrics

    assert metrics["wet.mem_available_bytes"] == 400 * 1024
    assert metrics["wet.mem_used_percent"] == 60.0


def test_a_sensor_with_garbage_is_skipped_and_said():
    parsed = output_parse("hwmon", "cpu\ttemp1\t41000\ngpu\ttemp1\tN/A\n", "wet")

    assert parsed.metrics == {"wet.temp.cpu_temp1": 41.0}
    assert "gpu_temp1" in parsed.note


def test_two_chips_of_the_same_name_keep_the_last_reading_and_say_so():
    parsed = output_parse("hwmon", "nvme\tComposite\t30000\nnvme\tComposite\t40000\n", "wet")

    assert parsed.metrics == {"wet.temp.nvme_composite": 40.0}
    assert "more than once" in parsed.note


# --- number ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output, value",
    [("42\n", 42.0), ("  -1.5e3 ", -1500.0), (".5", 0.5), ("7.", 7.0), ("+3", 3.0)],
)
def test_number_reads_one_number(output: str, value: float):
    assert output_parse("number", output, "wet.queue") == Parsed({"wet.queue": value})


@pytest.mark.parametrize(
    "output",
    [
        "",
        "\n",
        "nan",
        "inf",
        "-Infinity",
        "1_000",
        "0x10",
        "true",
        "42 kB",
        "1\n2",
        "1e16",  # beyond TELEMETRY_MAX_ABS_VALUE
        "1e999",
        "1" * MAX_OUTPUT,  # a huge number: infinite, refused (and no quadratic regex)
        "1" * MAX_OUTPUT + "x",
    ],
)
def test_number_refuses_anything_but_one_finite_number(output: str):
    with pytest.raises(ParseError) as refused:
        output_parse("number", output, "wet.queue")

    assert len(str(refused.value)) < 200  # an excerpt, not the output


# --- key_equals and key_colon -------------------------------------------------------------------


def test_key_equals_reads_lines_and_sanitises_keys():
    output = "# a comment\n\nrx_bytes=1200\nCPU Temp (°C) = 41.5\nfan.speed=900\n"

    parsed = output_parse("key_equals", output, "wet")

    assert parsed == Parsed(
        {"wet.rx_bytes": 1200.0, "wet.CPU_Temp_C": 41.5, "wet.fan.speed": 900.0}
    )


def test_key_colon_reads_lines():
    parsed = output_parse("key_colon", "voltage: 5.02\ncurrent:0.4\n", "psu")

    assert parsed.metrics == {"psu.voltage": 5.02, "psu.current": 0.4}


def test_non_numbers_are_skipped_and_said():
    output = "state=ok\nup=true\nratio=nan\nbig=1e300\ncount=3\n"

    parsed = output_parse("key_equals", output, "wet")

    assert parsed.metrics == {"wet.count": 3.0}
    for key in ("state", "up", "ratio", "big"):
        assert repr(key) in parsed.note


def test_a_repeated_key_keeps_the_last_value_and_says_so():
    parsed = output_parse("key_equals", "a=1\na=2\n", "wet")

    assert parsed.metrics == {"wet.a": 2.0}
    assert "more than once" in parsed.note


def test_keys_that_make_no_metric_name_are_skipped():
    output = f"%%%=1\n{'k' * 200}=2\nok=3\n"

    parsed = output_parse("key_equals", output, "wet")

    assert parsed.metrics == {"wet.ok": 3.0}
    assert "no valid metric name" in parsed.note


@pytest.mark.parametrize(
    "parser, output",
    [
        ("key_equals", "just some text\n"),
        ("key_colon", "a=1\n"),
        ("key_equals", "a=1\nb 2\n"),
        ("key_equals", "state=ok\n"),  # not one value
        ("key_colon", "MemTotal: 16316412 kB\n"),  # units are not numbers
        ("key_equals", "\x00\x1b[2J=\x07\n"),
    ],
)
def test_lines_not_of_the_parsers_shape_fail_the_check(parser: str, output: str):
    with pytest.raises(ParseError):
        output_parse(parser, output, "wet")


def test_empty_output_is_ok_and_said():
    assert output_parse("key_equals", "", "wet") == Parsed({}, "no output")
    assert output_parse("key_colon", "# nothing\n\n", "wet") == Parsed(
        {}, "only blank or comment lines"
    )


def test_more_metrics_than_a_sample_takes_fail_the_check(settings):  # noqa: ANN001
    settings.TELEMETRY_MAX_METRICS_PER_SAMPLE = 500
    output = "".join(f"k{n}={n}\n" for n in range(5000))  # about 50 KiB

    with pytest.raises(ParseError, match="at most 500"):
        output_parse("key_equals", output, "wet")


def test_huge_hostile_output_is_refused_with_a_short_message():
    output = "=" * MAX_OUTPUT

    with pytest.raises(ParseError) as refused:
        output_parse("key_equals", output, "wet")

    assert len(str(refused.value)) < 200


# --- json --------------------------------------------------------------------------------------


def test_json_flattens_nested_objects():
    output = json.dumps({"eth0": {"rx": 10, "tx": 20.5}, "uptime": 3, "a": {"b": {"c": -1}}})

    parsed = output_parse("json", output, "wet")

    assert parsed == Parsed(
        {"wet.eth0.rx": 10.0, "wet.eth0.tx": 20.5, "wet.uptime": 3.0, "wet.a.b.c": -1.0}
    )


def test_json_values_that_are_not_numbers_are_skipped_and_said():
    output = '{"ok": 1, "flag": true, "name": "wet", "none": null, "list": [1], "n": NaN, "i": 1e999, "huge": 1000000000000000000000}'  # noqa: E501

    parsed = output_parse("json", output, "wet")

    assert parsed.metrics == {"wet.ok": 1.0}
    for key in ("flag", "name", "none", "list", "n"):
        assert repr(key) in parsed.note


def test_json_repeated_keys_keep_the_last_and_say_so():
    parsed = output_parse("json", '{"a": 1, "a": 2}', "wet")

    assert parsed.metrics == {"wet.a": 2.0}
    assert "more than once" in parsed.note


@pytest.mark.parametrize(
    "output",
    [
        "[1, 2]",
        "42",
        '"text"',
        "{not json",
        '{"a": 1}{"b": 2}',
        "[" * 100_000,  # deeper than the JSON decoder recurses
        json.dumps({"only": "text"}),
    ],
)
def test_json_that_is_not_an_object_of_numbers_fails_the_check(output: str):
    with pytest.raises(ParseError):
        output_parse("json", output, "wet")


def test_json_nested_too_deep_fails_the_check():
    document: dict = {"v": 1}
    for _ in range(9):
        document = {"x": document}

    with pytest.raises(ParseError, match="deeper"):
        output_parse("json", json.dumps(document), "wet")


def test_empty_json_output_is_ok_and_said():
    assert output_parse("json", "  \n", "wet") == Parsed({}, "no output")


# --- Prefix and parser --------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "9wet", "wet board", "wet\n", "w" * 101])
def test_an_invalid_prefix_fails_the_check(prefix: str):
    with pytest.raises(ParseError, match="prefix"):
        output_parse("number", "1", prefix)


def test_an_unknown_parser_fails_the_check():
    with pytest.raises(ParseError, match="Unknown parser"):
        output_parse("xml", "<a/>", "wet")


def test_every_parser_choice_has_a_parser():
    assert set(PARSERS) == set(SshCheck.Parser.values)


# --- The built-in rows ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_migrate_creates_the_builtin_checks():
    rows = {check.name: check for check in SshCheck.objects.filter(builtin=True)}

    assert set(rows) == set(BUILTIN_CHECKS)
    for name, check in BUILTIN_CHECKS.items():
        assert (rows[name].command, rows[name].parser) == (check.command, check.parser)
        assert rows[name].metric_prefix == "wet"


@pytest.mark.django_db
def test_sync_restores_the_code_and_keeps_the_operators_timeout_and_prefix():
    SshCheck.objects.filter(name="memory").update(
        command="rm -rf /", parser="number", timeout_seconds=30, metric_prefix="board7"
    )

    ssh_checks_builtin_sync()

    memory = SshCheck.objects.get(name="memory")
    assert (memory.command, memory.parser) == ("cat /proc/meminfo", "meminfo")
    assert (memory.timeout_seconds, memory.metric_prefix) == (30, "board7")
    assert SshCheck.objects.filter(builtin=True).count() == len(BUILTIN_CHECKS)


@pytest.mark.django_db
def test_sync_recreates_a_deleted_builtin_and_leaves_operator_checks_alone():
    SshCheck.objects.filter(name="uptime").delete()
    mine = SshCheck.objects.create(name="queue", command="cat /tmp/q", parser="number")

    ssh_checks_builtin_sync()

    assert SshCheck.objects.filter(name="uptime", builtin=True).exists()
    mine.refresh_from_db()
    assert (mine.builtin, mine.command) == (False, "cat /tmp/q")
