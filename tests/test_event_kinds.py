"""The event-kind registry (devices/event_kinds.py) holds every kind the server
writes, and only those: the source of every writer is read (ast) for the kind it
passes to the event writers, following functions that pass their own `kind`
parameter on (ssh's `_event(kind, ...)`, alerting's `_transition_event`)."""

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from commands.models import Status
from devices.event_kinds import COMMAND_STATES, EVENT_KINDS, event_kinds_expand
from devices.events import event_build, events_record

ROOT = Path(__file__).resolve().parent.parent
SERVER_PACKAGES = ("devices", "commands", "analytics", "homepot")
# The writers: the kind is their `kind` keyword (Event(...) too, should anyone
# build one by hand).
WRITERS = {"event_build", "event_record", "Event"}
# Kinds built with an f-string, by their constant prefix: every value the rest
# can take, from the code that defines them.
DYNAMIC_FAMILIES = {"command.": {f"command.{status}" for status in Status}}
FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass
class Writer:
    """A function that writes an event whose kind is one of its parameters."""

    keyword: str
    position: int | None  # None: keyword-only


@dataclass
class Found:
    kinds: dict[str, list[str]] = field(default_factory=dict)  # kind -> where
    dynamic: dict[str, list[str]] = field(default_factory=dict)  # f-string prefix -> where
    unreadable: list[str] = field(default_factory=list)  # where a kind is not a literal

    def add(self, kinds: dict[str, list[str]], kind: str, where: str) -> None:
        kinds.setdefault(kind, []).append(where)


def server_sources() -> dict[str, ast.Module]:
    sources = {}
    for package in SERVER_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                relative = str(path.relative_to(ROOT))
                sources[relative] = ast.parse(path.read_text(), filename=relative)
    return sources


def kinds_written(sources: dict[str, ast.Module]) -> Found:
    """Every kind passed to an event writer, directly or through forwarding functions."""
    global_writers = {name: Writer("kind", None) for name in WRITERS}
    local_writers: dict[str, dict[str, Writer]] = {name: {} for name in sources}
    while True:  # until no new forwarding function turns up
        found, forwarders = _scan(sources, global_writers, local_writers)
        new = {
            (module, name): writer
            for module, name, writer in forwarders
            if name not in global_writers and name not in local_writers[module]
        }
        if not new:
            return found
        for (module, name), writer in new.items():
            # Private helpers are the module's own; public ones may be imported anywhere.
            (local_writers[module] if name.startswith("_") else global_writers)[name] = writer


def _scan(
    sources: dict[str, ast.Module],
    global_writers: dict[str, Writer],
    local_writers: dict[str, dict[str, Writer]],
) -> tuple[Found, list[tuple[str, str, Writer]]]:
    found, forwarders = Found(), []
    for module, tree in sources.items():
        writers = global_writers | local_writers[module]
        for function in _functions(tree):
            params = _parameters(function)
            for call in _calls(function):
                writer = writers.get(_called_name(call))
                argument = _kind_argument(call, writer) if writer else None
                if argument is None:
                    continue
                where = f"{module}:{call.lineno}"
                if isinstance(argument, ast.Name) and argument.id in params:
                    forwarders.append((module, function.name, params[argument.id]))
                else:
                    _record(found, argument, where)
    return found, forwarders


def _functions(tree: ast.Module) -> list[ast.AST]:
    """Every function, and the module itself for calls at module level."""
    functions = [node for node in ast.walk(tree) if isinstance(node, FUNCTION_NODES)]
    return [tree, *functions]


def _calls(scope: ast.AST) -> list[ast.Call]:
    """The calls directly in this scope (a nested function is a scope of its own)."""
    calls, stack = [], list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        if isinstance(node, (*FUNCTION_NODES, ast.Lambda)):
            continue
        if isinstance(node, ast.Call):
            calls.append(node)
        stack += ast.iter_child_nodes(node)
    return calls


def _parameters(function: ast.AST) -> dict[str, Writer]:
    if not isinstance(function, FUNCTION_NODES):
        return {}
    positional = [*function.args.posonlyargs, *function.args.args]
    params = {arg.arg: Writer(arg.arg, index) for index, arg in enumerate(positional)}
    params |= {arg.arg: Writer(arg.arg, None) for arg in function.args.kwonlyargs}
    if function.args.args and function.args.args[0].arg in ("self", "cls"):
        params = {name: Writer(w.keyword, _shift(w.position)) for name, w in params.items()}
    return params


def _shift(position: int | None) -> int | None:
    return None if position is None or position == 0 else position - 1


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _kind_argument(call: ast.Call, writer: Writer) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == writer.keyword:
            return keyword.value
    if writer.position is not None and writer.position < len(call.args):
        return call.args[writer.position]
    return None


def _record(found: Found, argument: ast.expr, where: str) -> None:
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        found.add(found.kinds, argument.value, where)
    elif isinstance(argument, ast.IfExp):
        _record(found, argument.body, where)
        _record(found, argument.orelse, where)
    elif isinstance(argument, ast.JoinedStr) and isinstance(argument.values[0], ast.Constant):
        found.add(found.dynamic, argument.values[0].value, where)
    else:
        found.unreadable.append(f"{where}: {ast.unparse(argument)}")


@pytest.fixture(scope="module")
def written() -> Found:
    return kinds_written(server_sources())


def test_every_kind_the_server_writes_is_registered(written):
    unregistered = {kind: where for kind, where in written.kinds.items() if kind not in EVENT_KINDS}

    assert unregistered == {}
    assert written.unreadable == []  # a kind the scan cannot read: pass a literal


def test_kinds_built_from_a_prefix_are_registered_for_every_value(written):
    assert set(written.dynamic) <= set(DYNAMIC_FAMILIES), "a new f-string kind: add its family"
    for prefix in written.dynamic:
        assert DYNAMIC_FAMILIES[prefix] <= EVENT_KINDS.keys()


def test_every_registered_kind_is_written_somewhere(written):
    dynamic = set().union(*(DYNAMIC_FAMILIES[prefix] for prefix in written.dynamic))

    assert set(EVENT_KINDS) - set(written.kinds) - dynamic == set()


def test_the_scan_follows_functions_that_pass_their_kind_on(written):
    # ssh's _event(kind, target, ...) and a direct event_record(kind=...) call
    assert "ssh.check_failed" in written.kinds
    assert "device.offline" in written.kinds
    assert "command." in written.dynamic


def test_the_scan_reports_an_unregistered_kind_passed_through_a_helper():
    source = ast.parse(
        "def _note(device, kind):\n"
        "    return event_build(kind=kind, device=device)\n"
        "def sweep():\n"
        "    _note(None, 'device.exploded')\n"
        "    event_record(kind=kind_of_the_day(), device=None)\n"
    )

    found = kinds_written({"fake.py": source})

    assert found.kinds == {"device.exploded": ["fake.py:4"]}
    assert found.unreadable == ["fake.py:5: kind_of_the_day()"]


def test_the_command_kinds_are_the_command_states():
    assert set(COMMAND_STATES) == {str(status) for status in Status}


def test_a_writer_refuses_an_unregistered_kind(db, agent):
    with pytest.raises(ValueError, match="device.exploded"):
        events_record([event_build(kind="device.exploded", device=agent.device)])


def test_a_filter_names_kinds_or_whole_families():
    assert event_kinds_expand(["ssh.*", "device.online"]) == sorted(
        ["device.online", *(kind for kind in EVENT_KINDS if kind.startswith("ssh."))]
    )
    with pytest.raises(ValueError, match="'ssh'"):
        event_kinds_expand(["ssh"])


def test_the_feed_documents_kind_as_the_registry(client, db):
    schema = yaml.safe_load(client.get("/api/schema").content)
    feed = schema["paths"]["/api/v1/events"]["get"]
    event_schema = schema["components"]["schemas"]["FeedEvent"]["properties"]["kind"]
    kind_filter = next(p for p in feed["parameters"] if p["name"] == "kind")

    assert set(_enum(schema, event_schema)) == set(EVENT_KINDS)
    assert set(kind_filter["schema"]["items"]["enum"]) >= set(EVENT_KINDS) | {"alert.*"}
    assert kind_filter["explode"] is False


def _enum(schema: dict, prop: dict) -> list[str]:
    """An enum, inline or behind a $ref (drf-spectacular names shared enums)."""
    if "$ref" in prop:
        return schema["components"]["schemas"][prop["$ref"].rsplit("/", 1)[1]]["enum"]
    if "allOf" in prop:
        return _enum(schema, prop["allOf"][0])
    return prop["enum"]
