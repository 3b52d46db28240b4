"""The admin of SSH targets and checks: the list, the add form that creates the
device, the change form with its checks, "Test connection" against the real sshd,
accepting an offered host key, the SSH panel of the device page, and the lab
monitor's page showing the boards it powers."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics.models import LatestValue, MetricName
from devices.models import AuditEntry, Device, SshCheck, SshTarget, SshTargetCheck
from devices.ssh import services
from devices.ssh.limits import session_slot
from devices.ssh.transport import host_key_fingerprint
from tests.test_ssh_targets_api import public_key_line, without_comment

TARGETS = "/admin/devices/sshtarget/"


def browser_for(user) -> Client:  # noqa: ANN001
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def browser(operator) -> Client:  # noqa: ANN001
    return browser_for(operator)


def board_make(site, public_id: str, *, checks: list[str] = (), **fields: object) -> SshTarget:  # noqa: ANN001
    """A target created through the service (by the system), with the named checks."""
    fields = {"host": "wet-1.lab.example", "username": "root", **fields}
    return services.ssh_target_create(
        actor=None,
        public_id=public_id,
        name=f"WET board {public_id}",
        site=site,
        checks=[services.CheckChoice(check) for check in SshCheck.objects.filter(name__in=checks)],
        **fields,
    )


@pytest.fixture
def board(site) -> SshTarget:  # noqa: ANN001
    return board_make(site, "wet-1", checks=["uptime"])


def section(html: str, element_id: str) -> str:
    return html.split(f'id="{element_id}"')[1].split("</fieldset>")[0]


def change_form(target: SshTarget, **changes: object) -> dict:
    """The change form as a browser posts it, with the target's checks inline."""
    rows = list(target.target_checks.order_by("pk"))
    form = {
        "host": target.host,
        "port": target.port,
        "username": target.username,
        "host_key": target.host_key,
        "via": target.via,
        "powered_by": target.powered_by_id or "",
        "interval_seconds": target.interval_seconds,
        "target_checks-TOTAL_FORMS": len(rows),
        "target_checks-INITIAL_FORMS": len(rows),
        "target_checks-MIN_NUM_FORMS": 0,
        "target_checks-MAX_NUM_FORMS": 1000,
    }
    if target.enabled:
        form["enabled"] = "on"
    for n, row in enumerate(rows):
        form[f"target_checks-{n}-id"] = row.pk
        form[f"target_checks-{n}-ssh_target"] = target.pk
        form[f"target_checks-{n}-ssh_check"] = row.ssh_check_id
        form[f"target_checks-{n}-interval_seconds"] = row.interval_seconds or ""
    return {**form, **changes}


# --- List, add, change, delete -------------------------------------------------------------


def test_the_list_shows_address_status_circuit_and_failures(browser, board):
    SshTarget.objects.update(
        last_status="host_key_mismatch",
        last_check_at=timezone.now(),
        consecutive_failures=4,
        circuit_opened_at=timezone.now(),
    )

    html = browser.get(TARGETS).content.decode()

    row = html.split("wet-1 (Lab 1)")[1].split("</tr>")[0]
    assert "root@wet-1.lab.example:22" in row
    assert re.search(r'data-status="host_key_mismatch"[^>]*>host key mismatch</span>', row)
    assert ">open<" in row and ">4<" in row
    assert browser.get(f"{TARGETS}?last_status__exact=ok").content.decode().count("wet-1") == 0


def add_form(site, **fields: object) -> dict:  # noqa: ANN001
    """The add form as a browser posts it."""
    return {
        "device_id": "wet-7",
        "name": "WET 7",
        "site": site.pk,
        "host": "10.0.0.7",
        "port": 22,
        "username": "root",
        "host_key": "",
        "via": "",
        "powered_by": "",
        "interval_seconds": 60,
        "enabled": "on",
        **fields,
    }


def test_adding_a_target_creates_its_device_and_checks(browser, site):
    key = public_key_line()
    checks = [SshCheck.objects.get(name=n).pk for n in ("uptime", "temperatures")]

    response = browser.post(f"{TARGETS}add/", add_form(site, host_key=key, initial_checks=checks))

    assert response.status_code == 302
    target = SshTarget.objects.select_related("device").get()
    assert (target.device.public_id, target.device.device_type) == ("wet-7", "wet_board")
    assert target.host_key == without_comment(key)
    assert sorted(target.checks.values_list("name", flat=True)) == ["temperatures", "uptime"]
    assert AuditEntry.objects.get(action="ssh_target.create").actor == "otto"
    assert response["Location"] == f"{TARGETS}{target.pk}/change/"


def test_the_add_form_offers_the_builtin_checks(browser, site):
    html = browser.get(f"{TARGETS}add/").content.decode()

    checked = re.findall(
        r'<input type="checkbox" name="initial_checks" value="(\d+)"[^>]*checked', html
    )
    builtin = SshCheck.objects.filter(builtin=True).values_list("pk", flat=True)
    assert sorted(map(int, checked)) == sorted(builtin)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("device_id", "pending"),
        ("device_id", "pi-1"),  # taken
        ("host", "-oProxyCommand=x"),
        ("port", 0),
        ("host_key", "ssh-ed25519 nope"),
        ("interval_seconds", 1),
    ],
)
def test_a_bad_add_form_is_shown_again_and_creates_nothing(browser, site, agent, field, value):
    response = browser.post(f"{TARGETS}add/", add_form(site, **{field: value}))

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not SshTarget.objects.exists()


def test_changing_the_host_in_the_admin_goes_through_the_service(browser, board):
    SshTarget.objects.update(consecutive_failures=3, circuit_opened_at=timezone.now())
    board.refresh_from_db()

    response = browser.post(f"{TARGETS}{board.pk}/change/", change_form(board, host="10.0.0.8"))

    assert response.status_code == 302
    board.refresh_from_db()
    assert (board.host, board.consecutive_failures, board.circuit_opened_at) == (
        "10.0.0.8",
        0,
        None,
    )
    assert AuditEntry.objects.get(action="ssh_target.change").data == {
        "changed": {"host": "10.0.0.8"}
    }


def test_a_checks_own_interval_is_set_inline(browser, board):
    form = change_form(board, **{"target_checks-0-interval_seconds": 15})

    response = browser.post(f"{TARGETS}{board.pk}/change/", form)

    assert response.status_code == 302
    assert SshTargetCheck.objects.get().interval_seconds == 15
    changed = AuditEntry.objects.get(action="ssh_target.change").data["changed"]
    assert changed == {"checks": [{"name": "uptime", "interval_seconds": 15}]}
    assert Device.objects.get(public_id="wet-1").checkin_interval == timedelta(seconds=15)


def test_a_check_is_added_inline(browser, board):
    load = SshCheck.objects.get(name="load")
    form = change_form(
        board,
        **{
            "target_checks-TOTAL_FORMS": 2,
            "target_checks-1-ssh_target": board.pk,
            "target_checks-1-ssh_check": load.pk,
            "target_checks-1-interval_seconds": "",
        },
    )

    assert browser.post(f"{TARGETS}{board.pk}/change/", form).status_code == 302
    assert sorted(board.checks.values_list("name", flat=True)) == ["load", "uptime"]
    assert SshTargetCheck.objects.get(ssh_check=load).next_run_at is not None


def test_saving_a_target_unchanged_is_not_audited(browser, board):
    assert browser.post(f"{TARGETS}{board.pk}/change/", change_form(board)).status_code == 302
    assert not AuditEntry.objects.filter(action="ssh_target.change").exists()


def test_deleting_a_target_in_the_admin_decommissions_its_device(browser, board):
    response = browser.post(f"{TARGETS}{board.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not SshTarget.objects.exists()
    assert Device.objects.get(public_id="wet-1").decommissioned_at is not None
    assert AuditEntry.objects.filter(action="ssh_target.delete").count() == 1


def test_a_viewer_sees_a_target_but_has_no_buttons(viewer, board):
    SshTarget.objects.update(offered_host_key=public_key_line())

    html = browser_for(viewer).get(f"{TARGETS}{board.pk}/change/").content.decode()

    assert "wet-1.lab.example" in html
    assert "Test connection" not in html and "Accept the offered host key" not in html
    refused = browser_for(viewer).post(f"{TARGETS}{board.pk}/test-connection/")
    assert refused.status_code == 403


@pytest.mark.parametrize("object_id", ["abc", "1%00", "99999999999999999999999"])
@pytest.mark.parametrize("view", ["change", "test-connection", "accept-host-key"])
def test_a_malformed_target_id_is_404(browser, db, object_id, view):
    assert browser.get(f"{TARGETS}{object_id}/{view}/").status_code in (404, 405)
    assert browser.post(f"{TARGETS}{object_id}/{view}/").status_code == 404


# --- Accepting an offered key --------------------------------------------------------------


def offer(board: SshTarget) -> str:
    offered = public_key_line("offered")
    SshTarget.objects.filter(pk=board.pk).update(
        offered_host_key=offered,
        offered_host_key_at=timezone.now(),
        last_status="host_key_mismatch",
        last_error="The host offered another key: nothing was run.",
    )
    return offered


def test_accepting_the_offered_key_asks_first_then_pins_it(browser, board):
    offered = offer(board)
    fingerprint = host_key_fingerprint(offered)

    page = browser.get(f"{TARGETS}{board.pk}/change/").content.decode()
    confirm = browser.get(f"{TARGETS}{board.pk}/accept-host-key/").content.decode()
    accepted = browser.post(
        f"{TARGETS}{board.pk}/accept-host-key/", {"fingerprint": fingerprint}, follow=True
    )

    assert fingerprint in page and "Accept the offered host key" in page
    assert f'name="fingerprint" value="{fingerprint}"' in confirm
    assert SshTarget.objects.get().host_key == without_comment(offered)
    assert "Host key accepted" in accepted.content.decode()
    assert AuditEntry.objects.get(action="ssh_target.accept_host_key").actor == "otto"


def test_a_stale_confirmation_accepts_nothing(browser, board):
    first = offer(board)
    offer(board)  # the host offered yet another key since the page was shown

    response = browser.post(
        f"{TARGETS}{board.pk}/accept-host-key/",
        {"fingerprint": host_key_fingerprint(first)},
        follow=True,
    )

    assert "Host key not accepted" in response.content.decode()
    assert SshTarget.objects.get().host_key == ""


def test_accepting_needs_csrf(operator, board):
    offered = offer(board)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(operator)

    response = strict.post(
        f"{TARGETS}{board.pk}/accept-host-key/", {"fingerprint": host_key_fingerprint(offered)}
    )

    assert response.status_code == 403
    assert SshTarget.objects.get().host_key == ""


# --- The device page ------------------------------------------------------------------------


def test_the_device_page_shows_a_host_key_mismatch_with_the_offered_fingerprint(browser, board):
    offered = offer(board)

    html = browser.get(f"/admin/devices/device/{board.device_id}/change/").content.decode()

    panel = section(html, "homepot-ssh")
    assert "Host key mismatch" in panel
    assert host_key_fingerprint(offered) in panel
    assert f"{TARGETS}{board.pk}/accept-host-key/" in panel
    assert "uptime" in panel


def test_other_devices_have_no_ssh_panel(browser, agent):
    html = browser.get(f"/admin/devices/device/{agent.device.pk}/change/").content.decode()

    assert 'id="homepot-ssh"' not in html


# --- SSH checks ---------------------------------------------------------------------------


def test_a_builtin_checks_command_and_parser_cannot_be_changed(admin_user):
    browser = browser_for(admin_user)
    uptime = SshCheck.objects.get(name="uptime")
    url = f"/admin/devices/sshcheck/{uptime.pk}/change/"

    response = browser.post(
        url,
        {
            "name": "uptime",
            "description": uptime.description,
            "command": "rm -rf /",
            "parser": "json",
            "metric_prefix": "x",
            "timeout_seconds": 7,
        },
    )

    assert response.status_code == 302
    uptime.refresh_from_db()
    assert (uptime.command, uptime.parser, uptime.timeout_seconds) == (
        "cat /proc/uptime",
        "uptime",
        7,
    )
    assert browser.get(f"/admin/devices/sshcheck/{uptime.pk}/delete/").status_code == 403


def test_an_operator_adds_a_check_with_an_operator_parser_only(browser):
    form = {
        "name": "ptp",
        "description": "",
        "command": "wr_mon --json",
        "parser": "hwmon",
        "metric_prefix": "wet.ptp",
        "timeout_seconds": 5,
    }

    refused = browser.post("/admin/devices/sshcheck/add/", form)
    accepted = browser.post("/admin/devices/sshcheck/add/", {**form, "parser": "json"})

    assert refused.status_code == 200 and "parser" in refused.context["adminform"].form.errors
    assert accepted.status_code == 302
    assert SshCheck.objects.get(name="ptp").builtin is False
    assert AuditEntry.objects.filter(action="ssh_check.create").count() == 1


# --- The lab view -----------------------------------------------------------------------


def test_a_lab_monitors_page_shows_the_boards_it_powers_with_their_temperatures(
    browser, make_agent, site
):
    monitor = make_agent("lab-mon-1", device_type="lab_monitor").device
    target = board_make(site, "wet-2", powered_by=monitor)
    SshTarget.objects.filter(pk=target.pk).update(last_status="ok", last_check_at=timezone.now())
    now = timezone.now()
    for name, value in [("wet.temp.fpga", 61.4), ("wet.temp.board", 38.5), ("wet.load1", 0.2)]:
        metric = MetricName.objects.create(name=name)
        LatestValue.objects.create(device=target.device, metric=metric, ts=now, value=value)

    html = browser.get(f"/admin/devices/device/{monitor.pk}/change/").content.decode()

    panel = section(html, "homepot-powered-boards")
    assert f'href="/admin/devices/device/{target.device_id}/change/"' in panel
    temperatures = re.findall(r'data-sensor="([^"]+)">[^ ]+ ([\d.]+)<', panel)
    assert temperatures == [("board", "38.5"), ("fpga", "61.4")]
    assert 'data-status="ok"' in panel
    assert "load1" not in panel


def test_a_device_that_powers_nothing_has_no_boards_panel(browser, make_agent):
    monitor = make_agent("lab-mon-1", device_type="lab_monitor").device

    html = browser.get(f"/admin/devices/device/{monitor.pk}/change/").content.decode()

    assert 'id="homepot-powered-boards"' not in html


# --- Test connection, against the real sshd -------------------------------------------------


@pytest.fixture
def board_at_sshd(site, sshd, ssh_identity) -> SshTarget:  # noqa: ANN001
    return board_make(
        site,
        "wet-9",
        checks=["uptime", "temperatures"],
        host=sshd.host,
        port=sshd.port,
        username=sshd.username,
        host_key=services.host_key_normalise(sshd.host_key),
    )


def test_test_connection_shows_each_checks_outcome(browser, board_at_sshd):
    page = browser.get(f"{TARGETS}{board_at_sshd.pk}/change/").content.decode()
    assert f'action="{TARGETS}{board_at_sshd.pk}/test-connection/"' in page

    response = browser.post(f"{TARGETS}{board_at_sshd.pk}/test-connection/")

    assert response.status_code == 200
    html = response.content.decode()
    rows = dict(re.findall(r'data-check="([^"]+)" data-status="([^"]+)"', html))
    assert rows == {"temperatures": "ok", "uptime": "ok"}
    assert "<code>wet.uptime</code>" in html
    assert 'data-status="ok"' in html.split('id="homepot-ssh-result"')[1]
    assert AuditEntry.objects.filter(action="ssh_target.check", actor="otto").count() == 1


def test_test_connection_with_a_wrong_key_offers_to_accept_the_hosts(browser, board_at_sshd, sshd):
    SshTarget.objects.filter(pk=board_at_sshd.pk).update(
        host_key=without_comment(public_key_line())
    )
    fingerprint = host_key_fingerprint(sshd.host_key)

    html = browser.post(f"{TARGETS}{board_at_sshd.pk}/test-connection/").content.decode()
    browser.post(f"{TARGETS}{board_at_sshd.pk}/accept-host-key/", {"fingerprint": fingerprint})
    again = browser.post(f"{TARGETS}{board_at_sshd.pk}/test-connection/").content.decode()

    assert 'data-status="host_key_mismatch"' in html
    assert f'id="homepot-ssh-offered-fingerprint">{fingerprint}<' in html
    assert f"{TARGETS}{board_at_sshd.pk}/accept-host-key/" in html
    assert 'data-check="uptime" data-status="ok"' in again


def test_test_connection_is_a_post(browser, board_at_sshd):
    assert browser.get(f"{TARGETS}{board_at_sshd.pk}/test-connection/").status_code == 405
    assert not AuditEntry.objects.filter(action="ssh_target.check").exists()


def test_a_board_busy_with_another_round_is_a_message_not_an_error(
    browser, board_at_sshd, settings
):
    settings.SSH_SLOT_WAIT_SECONDS = 0
    with session_slot(target_pk=board_at_sshd.pk, lease=30, wait=0):  # a round in progress
        response = browser.post(f"{TARGETS}{board_at_sshd.pk}/test-connection/", follow=True)

    assert response.redirect_chain[-1][0] == f"{TARGETS}{board_at_sshd.pk}/change/"
    assert "Connection not tested" in response.content.decode()


def test_the_target_list_costs_the_same_queries_for_many(browser, site):
    def add(first: int, count: int) -> None:
        for n in range(first, first + count):
            board_make(site, f"wet-{n}", checks=["uptime"])

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert browser.get(TARGETS).status_code == 200
        return len(captured)

    add(0, 2)
    few = queries()
    add(2, 8)

    assert queries() == few
