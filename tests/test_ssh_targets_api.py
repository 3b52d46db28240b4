"""/api/v1/ssh-targets (list, create, detail, change, delete, check now, accept the
offered host key) and /api/v1/ssh-checks: validation, permissions, the audit trail,
and a round against the real sshd."""

from collections.abc import Callable
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from analytics.models import LatestValue
from devices.models import AuditEntry, Device, Event, SshCheck, SshTarget, SshTargetCheck
from devices.ssh.limits import session_slot
from devices.ssh.transport import host_key_fingerprint
from tests.sshd import free_port

BUILTIN_CHECKS = ["load", "memory", "temperatures", "uptime"]


def public_key_line(comment: str = "board") -> str:
    """A fresh ed25519 public key in OpenSSH format, as a board's .pub file holds it."""
    public = Ed25519PrivateKey.generate().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{line.decode()} {comment}"


def without_comment(key_line: str) -> str:
    return " ".join(key_line.split()[:2])


@pytest.fixture
def api(client: APIClient, operator) -> APIClient:  # noqa: ANN001
    client.force_authenticate(operator)
    return client


def board_body(**fields: object) -> dict:
    return {
        "device_id": "wet-1",
        "name": "WET board 1",
        "site": "lab-1",
        "host": "wet-1.lab.example",
        "username": "root",
        **fields,
    }


@pytest.fixture
def create(api: APIClient, site) -> Callable[..., dict]:  # noqa: ANN001
    def post(**fields: object) -> dict:
        response = api.post("/api/v1/ssh-targets", board_body(**fields), format="json")
        assert response.status_code == 201, response.json()
        return response.json()

    return post


# --- Create ---------------------------------------------------------------------------------


def test_creating_a_target_creates_its_device_and_checks_in_one_go(api, create, site):
    key = public_key_line()

    body = create(
        port=2222,
        host_key=key,
        via="console server 3",
        checks=["uptime", {"name": "temperatures", "interval_seconds": 15}],
        interval_seconds=30,
    )

    device = Device.objects.get(public_id="wet-1")
    assert (device.device_type, device.site, device.name) == ("wet_board", site, "WET board 1")
    # Offline detection follows the most frequent check.
    assert device.checkin_interval == timedelta(seconds=15)
    assert body["host_key"] == without_comment(key)
    assert body["host_key_fingerprint"] == host_key_fingerprint(key)
    assert body["circuit"] == "closed" and body["last_status"] == ""
    assert body["device"]["status"] == "new"
    assert [
        (c["name"], c["interval_seconds"], c["effective_interval_seconds"]) for c in body["checks"]
    ] == [
        ("temperatures", 15, 15),
        ("uptime", None, 30),
    ]
    assert all(c["next_run_at"] for c in body["checks"])  # due at the next dispatch
    entry = AuditEntry.objects.get(action="ssh_target.create")
    assert (entry.actor, entry.target_id) == ("otto", "wet-1")
    assert entry.data["host_key"] == host_key_fingerprint(key)
    assert entry.data["checks"][0] == {"name": "uptime", "interval_seconds": None}
    assert Event.objects.filter(device=device, kind="device.registered").exists()


def test_a_line_of_ssh_keyscan_output_pins_its_key(create):
    key = public_key_line()
    keyscan_line = f"wet-1.lab.example {without_comment(key)}"

    body = create(host_key=keyscan_line)

    assert body["host_key"] == without_comment(key)


def test_a_target_without_checks_named_runs_every_builtin_check(create):
    body = create()

    assert sorted(c["name"] for c in body["checks"]) == BUILTIN_CHECKS
    assert body["host_key"] == "" and body["host_key_fingerprint"] == ""


def test_an_empty_list_of_checks_means_none(create):
    assert create(checks=[])["checks"] == []


def test_a_taken_device_id_is_409_and_creates_nothing(api, site, agent):
    response = api.post("/api/v1/ssh-targets", board_body(device_id="pi-1"), format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "device_exists"
    assert not SshTarget.objects.exists()


def test_an_unknown_check_is_400_naming_it(api, site):
    response = api.post(
        "/api/v1/ssh-targets",
        board_body(checks=["uptime", "fan_speed", {"name": "psu_rail"}]),
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"checks": ["Unknown SSH check: fan_speed, psu_rail."]}
    assert not Device.objects.filter(public_id="wet-1").exists()


def test_a_check_listed_twice_is_400(api, site):
    response = api.post(
        "/api/v1/ssh-targets",
        board_body(checks=["uptime", {"name": "uptime", "interval_seconds": 10}]),
        format="json",
    )

    assert response.status_code == 400
    assert "uptime" in response.json()["checks"][0]


@pytest.mark.parametrize(
    ("host_key", "message"),
    [
        ("ssh-ed25519 !!!not-base64!!!", "not base64"),
        ("ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "type"),
        ("ssh-rsa " + public_key_line().split()[1], "not a valid ssh-rsa key"),
        ("ssh-ed25519 AAAA", "not a valid"),
        (public_key_line() + "\n" + public_key_line(), "one line"),
        ("just-one-word", "one line"),
    ],
)
def test_a_host_key_that_does_not_parse_is_400(api, site, host_key, message):
    response = api.post("/api/v1/ssh-targets", board_body(host_key=host_key), format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["host_key"]
    assert message in response.json()["host_key"][0]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", 0),
        ("port", 70000),
        ("port", "twenty-two"),
        ("port", True),
        ("host", "-oProxyCommand=touch /tmp/x"),
        ("host", "two words"),
        ("host", "999.1.1.1"),
        ("host", "a" * 64 + ".example"),
        ("host", "x" * 300),
        ("host", ""),
        ("host", ["wet-1"]),
        ("username", "Root"),
        ("username", "a b"),
        ("username", "x" * 33),
        ("username", 7),
        ("device_id", "pending"),
        ("device_id", "Sites"),
        ("device_id", "has/slash"),
        ("device_id", "d" * 65),
        ("name", "n" * 201),
        ("name", {"a": 1}),
        ("site", "nowhere"),
        ("site", 12),
        ("site", ["lab-1"]),
        ("interval_seconds", 4),
        ("interval_seconds", 86401),
        ("interval_seconds", 2**40),
        ("checks", "uptime"),
        ("checks", [1]),
        ("checks", [{"name": "uptime", "bogus": 1}]),
        ("checks", [{"name": "uptime", "interval_seconds": 1}]),
        ("checks", [{"interval_seconds": 60}]),
        ("checks", ["uptime"] * 51),
        ("host_key", "ssh-ed25519 " + "A" * 20000),
        ("host_key", 42),
        ("via", "v" * 201),
        ("powered_by", "no-such-device"),
        ("powered_by", {"device_id": "x"}),
        ("enabled", "perhaps"),
        ("device_type", "not a slug"),
        ("colour", "red"),
    ],
)
def test_hostile_input_is_400_naming_the_field(api, site, field, value):
    response = api.post("/api/v1/ssh-targets", board_body(**{field: value}), format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not SshTarget.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        b'{"device_id": "wet-1\\u0000", "name": "x", "site": "lab-1"}',
        b'["not", "an", "object"]',
        b'{"device_id": ',
        b"null",
    ],
)
def test_a_body_that_is_not_a_target_is_400(api, site, body):
    response = api.post("/api/v1/ssh-targets", body, content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("host", ["192.0.2.7", "2001:db8::7", "wet-1", "WET-1.Lab.Example."])
def test_a_host_is_a_name_or_an_address(create, host):
    assert create(host=host)["host"] == host


# --- powered_by: the lab monitor that feeds the board ----------------------------------


def test_a_board_is_powered_by_a_device_of_its_site(create, make_agent):
    make_agent("lab-mon-1", device_type="lab_monitor")

    body = create(powered_by="lab-mon-1")

    assert body["powered_by"] == "lab-mon-1"
    assert SshTarget.objects.get().powered_by.public_id == "lab-mon-1"


def test_a_board_cannot_be_powered_from_another_site(api, make_agent, other_site):
    make_agent("lab-mon-2", device_type="lab_monitor", site_public_id="lab-2")

    response = api.post("/api/v1/ssh-targets", board_body(powered_by="lab-mon-2"), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_powered_by"
    assert not Device.objects.filter(public_id="wet-1").exists()


def test_a_decommissioned_device_powers_nothing(api, make_agent):
    from devices.services import device_decommission

    monitor = make_agent("lab-mon-1", device_type="lab_monitor").device
    device_decommission(device=monitor, actor=None)

    response = api.post("/api/v1/ssh-targets", board_body(powered_by="lab-mon-1"), format="json")

    assert response.status_code == 400


# --- List and detail ----------------------------------------------------------------------


def test_the_list_filters_by_site_enabled_and_last_status(api, create, other_site):
    create(device_id="wet-1")
    create(device_id="wet-2", enabled=False)
    create(device_id="wet-3", site="lab-2")
    SshTarget.objects.filter(device__public_id="wet-2").update(last_status="host_key_mismatch")

    def listed(query: str) -> list[str]:
        response = api.get(f"/api/v1/ssh-targets{query}")
        assert response.status_code == 200
        return [t["device_id"] for t in response.json()["results"]]

    assert listed("") == ["wet-1", "wet-2", "wet-3"]
    assert listed("?site=lab-2") == ["wet-3"]
    assert listed("?enabled=false") == ["wet-2"]
    assert listed("?last_status=host_key_mismatch") == ["wet-2"]
    assert listed("?last_status=never") == ["wet-1", "wet-3"]
    assert api.get("/api/v1/ssh-targets?last_status=bogus").status_code == 400


def test_listing_targets_costs_the_same_queries_for_many(api, create):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.get("/api/v1/ssh-targets").status_code == 200
        return len(captured)

    create(device_id="wet-1")
    few = queries()
    for n in range(2, 8):
        create(device_id=f"wet-{n}", checks=["uptime", {"name": "load", "interval_seconds": 9}])

    assert queries() == few


def test_an_unknown_target_is_404(api, agent):
    # pi-1 is a device, but not an SSH target.
    assert api.get("/api/v1/ssh-targets/pi-1").status_code == 404
    assert api.get("/api/v1/ssh-targets/nope").status_code == 404
    assert api.post("/api/v1/ssh-targets/nope/check").status_code == 404


def test_the_detail_shows_the_offered_key_and_the_circuit(api, create):
    create()
    offered = public_key_line("offered")
    now = timezone.now()
    SshTarget.objects.update(
        offered_host_key=offered,
        offered_host_key_at=now,
        consecutive_failures=3,
        circuit_opened_at=now,
        last_status="host_key_mismatch",
    )

    body = api.get("/api/v1/ssh-targets/wet-1").json()

    assert body["offered_host_key_fingerprint"] == host_key_fingerprint(offered)
    assert (body["circuit"], body["consecutive_failures"]) == ("open", 3)
    assert body["last_status"] == "host_key_mismatch"


# --- Change ------------------------------------------------------------------------------


def open_circuit_with_an_offered_key() -> str:
    offered = public_key_line("offered")
    SshTarget.objects.update(
        offered_host_key=offered,
        offered_host_key_at=timezone.now(),
        consecutive_failures=5,
        circuit_opened_at=timezone.now(),
        last_status="failed",
    )
    SshTargetCheck.objects.update(next_run_at=timezone.now() + timedelta(hours=1))
    return offered


def test_a_new_host_closes_the_circuit_and_forgets_the_offered_key(api, create):
    create()
    open_circuit_with_an_offered_key()

    response = api.patch("/api/v1/ssh-targets/wet-1", {"host": "10.0.0.9"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["host"], body["circuit"], body["consecutive_failures"]) == (
        "10.0.0.9",
        "closed",
        0,
    )
    assert body["offered_host_key"] == "" and body["offered_host_key_at"] is None
    assert SshTargetCheck.objects.filter(next_run_at__gt=timezone.now()).count() == 0
    entry = AuditEntry.objects.get(action="ssh_target.change")
    assert entry.data == {"changed": {"host": "10.0.0.9"}}


def test_changing_only_the_schedule_keeps_the_circuit(api, create):
    create()
    open_circuit_with_an_offered_key()

    body = api.patch(
        "/api/v1/ssh-targets/wet-1", {"interval_seconds": 120, "via": "jump-2"}, format="json"
    ).json()

    assert (body["interval_seconds"], body["via"], body["circuit"]) == (120, "jump-2", "open")
    assert body["offered_host_key"] != ""
    assert AuditEntry.objects.get(action="ssh_target.change").data == {
        "changed": {"interval_seconds": 120, "via": "jump-2"}
    }
    assert Device.objects.get(public_id="wet-1").checkin_interval == timedelta(seconds=120)


def test_changing_the_checks_keeps_the_outcome_of_those_kept(api, create):
    create(checks=["uptime", "load"])
    SshTargetCheck.objects.filter(ssh_check__name="uptime").update(
        last_status="ok", last_run_at=timezone.now()
    )

    body = api.patch(
        "/api/v1/ssh-targets/wet-1",
        {"checks": [{"name": "uptime", "interval_seconds": 10}, "memory"]},
        format="json",
    ).json()

    assert [(c["name"], c["interval_seconds"], c["last_status"]) for c in body["checks"]] == [
        ("memory", None, ""),
        ("uptime", 10, "ok"),
    ]
    changed = AuditEntry.objects.get(action="ssh_target.change").data["changed"]
    assert changed == {
        "checks": [
            {"name": "uptime", "interval_seconds": 10},
            {"name": "memory", "interval_seconds": None},
        ]
    }


def test_a_patch_that_changes_nothing_is_not_audited(api, create):
    create(port=22)

    response = api.patch("/api/v1/ssh-targets/wet-1", {"port": 22, "enabled": True}, format="json")

    assert response.status_code == 200
    assert not AuditEntry.objects.filter(action="ssh_target.change").exists()


@pytest.mark.parametrize(
    "body",
    [
        {"device_id": "wet-9"},
        {"site": "lab-2"},
        {"port": 0},
        {"host_key": "ssh-ed25519 nope"},
        {"checks": ["nope"]},
        {"powered_by": "wet-1"},  # itself
    ],
)
def test_a_bad_patch_is_400_and_changes_nothing(api, create, body):
    create()

    response = api.patch("/api/v1/ssh-targets/wet-1", body, format="json")

    assert response.status_code == 400
    assert SshTarget.objects.get().port == 22
    assert not AuditEntry.objects.filter(action="ssh_target.change").exists()


def test_a_new_pinned_key_is_stored_without_its_comment(api, create):
    create()
    key = public_key_line("root@wet-1")

    body = api.patch("/api/v1/ssh-targets/wet-1", {"host_key": key}, format="json").json()

    assert body["host_key"] == without_comment(key)
    assert AuditEntry.objects.get(action="ssh_target.change").data == {
        "changed": {"host_key": host_key_fingerprint(key)}
    }


# --- Delete -----------------------------------------------------------------------------


def test_deleting_a_target_decommissions_its_device_and_keeps_its_history(api, create):
    create()

    response = api.delete("/api/v1/ssh-targets/wet-1")

    assert response.status_code == 204
    assert not SshTarget.objects.exists() and not SshTargetCheck.objects.exists()
    device = Device.objects.get(public_id="wet-1")
    assert device.status == Device.Status.DECOMMISSIONED
    actions = set(AuditEntry.objects.filter(target_id="wet-1").values_list("action", flat=True))
    assert {"ssh_target.create", "ssh_target.delete", "device.decommission"} <= actions
    assert api.get("/api/v1/ssh-targets/wet-1").status_code == 404
    again = api.post("/api/v1/ssh-targets", board_body(), format="json")
    assert again.status_code == 409  # the device id stays taken


# --- Accept the offered host key -----------------------------------------------------------


def test_accepting_the_offered_key_pins_it_and_closes_the_circuit(api, create):
    old = public_key_line("old")
    create(host_key=old)
    offered = open_circuit_with_an_offered_key()

    response = api.post(
        "/api/v1/ssh-targets/wet-1/accept-host-key",
        {"fingerprint": host_key_fingerprint(offered)},
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert body["host_key"] == without_comment(offered)
    assert (body["offered_host_key"], body["circuit"], body["consecutive_failures"]) == (
        "",
        "closed",
        0,
    )
    assert SshTargetCheck.objects.filter(next_run_at__gt=timezone.now()).count() == 0
    entry = AuditEntry.objects.get(action="ssh_target.accept_host_key")
    assert entry.data == {
        "old_fingerprint": host_key_fingerprint(old),
        "new_fingerprint": host_key_fingerprint(offered),
    }
    assert Event.objects.filter(kind="ssh.host_key_accepted").count() == 1


def test_the_fingerprint_may_be_given_without_its_prefix(api, create):
    create()
    offered = open_circuit_with_an_offered_key()
    bare = host_key_fingerprint(offered).removeprefix("SHA256:")

    response = api.post(
        "/api/v1/ssh-targets/wet-1/accept-host-key", {"fingerprint": bare}, format="json"
    )

    assert response.status_code == 200


def test_another_fingerprint_than_the_offered_keys_is_409(api, create):
    pinned = public_key_line()
    create(host_key=pinned)
    open_circuit_with_an_offered_key()

    response = api.post(
        "/api/v1/ssh-targets/wet-1/accept-host-key",
        {"fingerprint": host_key_fingerprint(public_key_line())},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["code"] == "fingerprint_mismatch"
    assert SshTarget.objects.get().host_key == without_comment(pinned)
    assert not AuditEntry.objects.filter(action="ssh_target.accept_host_key").exists()


def test_accepting_when_nothing_was_offered_is_409(api, create):
    create()

    response = api.post(
        "/api/v1/ssh-targets/wet-1/accept-host-key",
        {"fingerprint": "SHA256:" + "A" * 43},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["code"] == "no_offered_host_key"


@pytest.mark.parametrize("body", [{}, {"fingerprint": "x" * 101}, {"fingerprint": 5, "x": 1}])
def test_a_bad_accept_request_is_400(api, create, body):
    create()

    response = api.post("/api/v1/ssh-targets/wet-1/accept-host-key", body, format="json")

    assert response.status_code == 400


# --- Permissions ---------------------------------------------------------------------------


def test_a_viewer_reads_targets_and_checks_but_changes_nothing(client, viewer, create):
    create()
    client.force_authenticate(viewer)
    target = "/api/v1/ssh-targets/wet-1"

    assert client.get("/api/v1/ssh-targets").status_code == 200
    assert client.get(target).status_code == 200
    assert client.get("/api/v1/ssh-checks").status_code == 200
    refused = [
        client.post("/api/v1/ssh-targets", board_body(device_id="wet-2"), format="json"),
        client.patch(target, {"port": 2200}, format="json"),
        client.delete(target),
        client.post(f"{target}/check"),
        client.post(f"{target}/accept-host-key", {"fingerprint": "SHA256:x"}, format="json"),
        client.post("/api/v1/ssh-checks", {"name": "x"}, format="json"),
    ]
    assert [r.status_code for r in refused] == [403] * 6
    assert SshTarget.objects.get().port == 22


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/ssh-targets"),
        ("post", "/api/v1/ssh-targets"),
        ("get", "/api/v1/ssh-targets/wet-1"),
        ("post", "/api/v1/ssh-targets/wet-1/check"),
        ("get", "/api/v1/ssh-checks"),
    ],
)
def test_anonymous_is_401(client, db, method, path):
    assert getattr(client, method)(path).status_code == 401


# --- Checks ------------------------------------------------------------------------------


def test_the_checks_list_shows_the_builtin_ones(client, viewer):
    client.force_authenticate(viewer)

    checks = client.get("/api/v1/ssh-checks").json()["results"]

    builtin = {c["name"]: c for c in checks if c["builtin"]}
    assert sorted(builtin) == BUILTIN_CHECKS
    assert builtin["uptime"]["command"] == "cat /proc/uptime"


def test_an_operator_adds_a_check_and_a_target_runs_it(api, create):
    response = api.post(
        "/api/v1/ssh-checks",
        {
            "name": "ptp",
            "description": "PTP offset",
            "command": "wr_mon --json",
            "parser": "json",
            "metric_prefix": "wet.ptp",
            "timeout_seconds": 5,
        },
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["builtin"] is False
    assert AuditEntry.objects.get(action="ssh_check.create").data["command"] == "wr_mon --json"
    assert [c["name"] for c in create(checks=["ptp"])["checks"]] == ["ptp"]


def check_body(**fields: object) -> dict:
    return {"name": "mine", "command": "true", "parser": "number", "metric_prefix": "x", **fields}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (check_body(name="uptime"), 409, None),
        (check_body(parser="hwmon"), 400, "parser"),
        (check_body(command="a\nb"), 400, "command"),
        (check_body(command=""), 400, "command"),
        (check_body(command="x" * 1001), 400, "command"),
        (check_body(metric_prefix="1x"), 400, "metric_prefix"),
        (check_body(name="my check"), 400, "name"),
        (check_body(timeout_seconds=0), 400, "timeout_seconds"),
        (check_body(builtin=True), 400, "builtin"),
    ],
)
def test_a_bad_check_is_refused(api, body, status, field):
    response = api.post("/api/v1/ssh-checks", body, format="json")

    assert response.status_code == status
    if field:
        assert field in response.json()
    assert SshCheck.objects.filter(builtin=False).count() == 0


# --- Check now, against the real sshd ---------------------------------------------------------


@pytest.fixture
def board_at_sshd(create, sshd, ssh_identity) -> Callable[..., dict]:  # noqa: ANN001
    """A target at the test sshd (the WET board), created through the API."""

    def make(**fields: object) -> dict:
        at_sshd = {
            "host": sshd.host,
            "port": sshd.port,
            "username": sshd.username,
            "host_key": sshd.host_key,
            "checks": ["uptime", "load"],
        }
        return create(**{**at_sshd, **fields})

    return make


def check_now(api: APIClient, device_id: str = "wet-1") -> dict:
    response = api.post(f"/api/v1/ssh-targets/{device_id}/check")
    assert response.status_code == 200, response.json()
    return response.json()


def test_checking_now_reports_each_checks_metrics_and_stores_them(api, board_at_sshd):
    board_at_sshd()

    report = check_now(api)

    assert (report["status"], report["error"], report["circuit"]) == ("ok", "", "closed")
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {"load", "uptime"}
    assert checks["uptime"]["status"] == "ok" and checks["uptime"]["metrics"]["wet.uptime"] > 0
    assert set(checks["load"]["metrics"]) >= {"wet.load1", "wet.load5", "wet.load15"}
    detail = api.get("/api/v1/ssh-targets/wet-1").json()
    assert (detail["last_status"], detail["device"]["status"]) == ("ok", "online")
    latest = LatestValue.objects.filter(device__public_id="wet-1")
    assert "wet.uptime" in set(latest.values_list("metric__name", flat=True))


def test_a_wrong_key_runs_nothing_and_reports_the_offered_fingerprint_to_accept(
    api, board_at_sshd, sshd
):
    board_at_sshd(host_key=public_key_line("not the board"))
    fingerprint = host_key_fingerprint(sshd.host_key)

    refused = check_now(api)

    assert refused["status"] == "host_key_mismatch"
    assert refused["offered_host_key_fingerprint"] == fingerprint
    assert refused["checks"] == []
    detail = api.get("/api/v1/ssh-targets/wet-1").json()
    assert detail["offered_host_key_fingerprint"] == fingerprint

    accepted = api.post(
        "/api/v1/ssh-targets/wet-1/accept-host-key", {"fingerprint": fingerprint}, format="json"
    )

    assert accepted.status_code == 200
    assert accepted.json()["host_key_fingerprint"] == fingerprint
    assert check_now(api)["status"] == "ok"


def test_a_first_contact_without_a_pinned_key_only_reports_the_offered_key(
    api, board_at_sshd, sshd
):
    board_at_sshd(host_key="")

    report = check_now(api)

    assert report["status"] == "host_key_mismatch"
    assert report["offered_host_key_fingerprint"] == host_key_fingerprint(sshd.host_key)
    assert api.get("/api/v1/ssh-targets/wet-1").json()["host_key"] == ""


def test_a_board_that_is_off_is_a_failed_report_not_an_error(api, board_at_sshd):

    board_at_sshd(port=free_port())  # nothing listens there

    report = check_now(api)

    assert report["status"] == "failed"
    assert report["error"] and report["checks"] == []
    assert api.get("/api/v1/ssh-targets/wet-1").json()["consecutive_failures"] == 1


def test_a_board_busy_with_another_round_is_503_ssh_busy(api, board_at_sshd, settings):
    settings.SSH_SLOT_WAIT_SECONDS = 0
    board_at_sshd()
    target = SshTarget.objects.get()

    with session_slot(target_pk=target.pk, lease=30, wait=0):  # a round in progress
        response = api.post("/api/v1/ssh-targets/wet-1/check")

    assert response.status_code == 503
    assert response.json()["code"] == "ssh_busy"
    assert response["Retry-After"] == "1"


def test_a_shorter_interval_brings_the_next_runs_forward(api, create):
    create(interval_seconds=3600)
    ran = timezone.now() - timedelta(minutes=5)
    SshTargetCheck.objects.update(last_run_at=ran, next_run_at=ran + timedelta(hours=1))

    api.patch("/api/v1/ssh-targets/wet-1", {"interval_seconds": 60}, format="json")

    next_runs = set(SshTargetCheck.objects.values_list("next_run_at", flat=True))
    assert len(next_runs) == 1
    assert next_runs.pop() <= timezone.now()  # overdue by the new interval: due now
