"""The agent-server contract: defined once on the server, exported for the agent.

`manage.py homepot_contract` writes the command types (with their payload
rules), the service-name and the metric-name pattern to
agent_client/homepot_agent/contract.json; the agent reads them from there.
These tests fail when the committed file is stale or the agent disagrees.
"""

import json
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from homepot_agent import collectors, config, contract, executor

from analytics.fields import METRIC_NAME_PATTERN
from commands.contract import CONTRACT_PATH, contract_text
from commands.registry import COMMAND_TYPES, SERVICE_NAME_PATTERN


@pytest.fixture
def contract_copy(tmp_path: Path) -> Path:
    return Path(shutil.copy(CONTRACT_PATH, tmp_path / "contract.json"))


def _rewrite(path: Path, change) -> dict:  # noqa: ANN001 (a function changing the dict)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return data


def test_the_committed_contract_is_what_the_server_defines():
    assert CONTRACT_PATH.read_text(encoding="utf-8") == contract_text()
    call_command("homepot_contract", "--check")  # raises CommandError when stale


def test_a_stale_contract_file_is_refused(contract_copy):
    _rewrite(contract_copy, lambda c: c["command_types"].pop("reboot"))

    with pytest.raises(CommandError, match="stale"):
        call_command("homepot_contract", "--check", "--path", str(contract_copy))

    call_command("homepot_contract", "--path", str(contract_copy))  # regenerates it
    call_command("homepot_contract", "--check", "--path", str(contract_copy))


def test_the_contract_names_every_server_definition():
    exported = json.loads(CONTRACT_PATH.read_text())

    assert list(exported["command_types"]) == list(COMMAND_TYPES)
    assert exported["service_name_pattern"] == SERVICE_NAME_PATTERN
    assert exported["metric_name_pattern"] == METRIC_NAME_PATTERN
    update = exported["command_types"]["update_config"]
    assert update["min_payload_fields"] == 1
    assert update["payload"]["push_interval"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 86400,
        "required": False,
    }


def test_the_agent_reads_its_definitions_from_the_contract():
    assert config.ALL_COMMANDS == list(COMMAND_TYPES)
    assert executor.PAYLOAD_KEYS == {
        name: tuple(t.payload().fields) for name, t in COMMAND_TYPES.items()
    }
    assert executor.SERVICE_NAME is contract.SERVICE_NAME
    assert collectors.METRIC_NAME_RE is contract.METRIC_NAME


def test_the_agent_implements_exactly_the_contracts_command_types():
    assert executor.contract_problems() == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda c: c["command_types"].update(psu_set={"payload": {"voltage": {}}}), "psu_set"),
        (lambda c: c["command_types"].pop("list_services"), "list_services"),
        (
            lambda c: c["command_types"]["update_config"]["payload"].update(log_level={}),
            "update_config",
        ),
    ],
    ids=["a-type-the-agent-lacks", "a-type-the-server-dropped", "a-new-payload-field"],
)
def test_an_agent_that_disagrees_with_the_contract_is_caught(contract_copy, change, problem):
    perturbed = _rewrite(contract_copy, change)

    problems = executor.contract_problems(contract.payload_keys(perturbed))

    assert [p for p in problems if p.startswith(f"{problem}:")], problems


NAMES = ["nginx", "nginx.service", "getty@tty1.service", "a" * 128, "a" * 129, "-x", "", "ng inx"]


@pytest.mark.parametrize("name", [*NAMES, "nginx\n", "nginx\nx"])
def test_server_and_agent_agree_on_service_names(client, operator, agent, name):
    client.force_authenticate(operator)
    server = client.post(
        "/api/v1/devices/pi-1/commands",
        {"command_type": "restart_service", "payload": {"service": name}},
        format="json",
    )
    agent_config = config.AgentConfig(allowed_services=[name])
    refusal = executor.Executor(agent_config).check(
        {"command_type": "restart_service", "payload": {"service": name}}
    )

    assert server.status_code in (201, 400), server.content
    assert (server.status_code == 201) == (refusal is None), (server.json(), refusal)


@pytest.mark.parametrize(
    "name", ["cpu_percent", "a.b:c-d", "_x", "x" * 100, "x" * 101, "1cpu", "cpu\n", "cpu percent"]
)
def test_server_and_agent_agree_on_metric_names(client, agent, name):
    server = client.post(
        "/api/v1/analytics/device-metrics",
        {"extra_metrics": {name: 1.0}},
        format="json",
        **agent.headers,
    )

    assert server.status_code in (201, 400), server.content
    assert (server.status_code == 201) == bool(collectors.METRIC_NAME_RE.match(name))


def test_every_name_the_agent_builds_is_one_the_contract_allows():
    for parts in [("temp", "cpu thermal", 0), ("9volt",), ("x" * 300,), ("", "é")]:
        assert contract.METRIC_NAME.fullmatch(collectors.metric_name(*parts)), parts
