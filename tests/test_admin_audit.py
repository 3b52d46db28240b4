"""Every change an operator makes in the admin to a device, a site or an
enrollment token is in the audit trail, with who made it."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from commands.models import Command, CommandGroup
from devices import services
from devices.models import AuditEntry, Device, EnrollmentToken, Site


@pytest.fixture
def browser(operator) -> Client:
    browser = Client()
    browser.force_login(operator)
    return browser


@pytest.fixture
def admin_browser(admin_user) -> Client:
    browser = Client()
    browser.force_login(admin_user)
    return browser


def audit_of(action: str) -> list[tuple[str, str, dict]]:
    """(actor, target id, data) of every entry of `action`, oldest first."""
    entries = AuditEntry.objects.filter(action=action).order_by("id")
    return [(e.actor, e.target_id, e.data) for e in entries]


def device_form(device: Device, **changes: object) -> dict:
    form = {
        "name": device.name,
        "device_type": device.device_type,
        "site": device.site_id,
        "ip_address": device.ip_address or "",
        "checkin_interval": str(device.checkin_interval),
        # A callable default makes Django send the initial value along, as a browser does.
        "initial-checkin_interval": str(device.checkin_interval),
        "credentials-TOTAL_FORMS": 0,
        "credentials-INITIAL_FORMS": 0,
    }
    if device.is_simulated:
        form["is_simulated"] = "on"
    return {**form, **changes}


def test_changing_a_device_is_audited_with_the_fields_changed(browser, agent, other_site):
    url = f"/admin/devices/device/{agent.device.pk}/change/"

    response = browser.post(url, device_form(agent.device, name="Bench Pi", site=other_site.pk))

    assert response.status_code == 302
    assert Device.objects.get().name == "Bench Pi"
    [(actor, target, data)] = audit_of("device.change")
    assert (actor, target) == ("otto", "pi-1")
    assert data == {"changed": {"name": "Bench Pi", "site": "lab-2"}}


def test_saving_a_device_unchanged_is_not_audited(browser, agent):
    url = f"/admin/devices/device/{agent.device.pk}/change/"

    browser.post(url, device_form(agent.device))

    assert audit_of("device.change") == []


def test_a_refused_change_leaves_no_audit_entry(browser, agent):
    url = f"/admin/devices/device/{agent.device.pk}/change/"

    response = browser.post(url, device_form(agent.device, ip_address="not an address"))

    assert response.status_code == 200  # the form again, with the error
    assert audit_of("device.change") == []


def test_adding_a_site_is_audited(browser):
    response = browser.post("/admin/devices/site/add/", {"public_id": "lab-9", "name": "Lab 9"})

    assert response.status_code == 302
    assert Site.objects.filter(public_id="lab-9").exists()
    assert audit_of("site.create") == [("otto", "lab-9", {})]


def test_changing_a_site_is_audited(browser, site):
    response = browser.post(
        f"/admin/devices/site/{site.pk}/change/",
        {"public_id": "lab-1", "name": "Lab One", "location": "B2"},
    )

    assert response.status_code == 302
    assert audit_of("site.change") == [
        ("otto", "lab-1", {"changed": {"name": "Lab One", "location": "B2"}})
    ]


def test_a_sites_public_id_cannot_be_changed_in_the_admin(browser, site):
    response = browser.post(
        f"/admin/devices/site/{site.pk}/change/", {"public_id": "lab-x", "name": "Lab 1"}
    )

    assert response.status_code == 302
    assert Site.objects.get().public_id == "lab-1"


def test_deleting_a_site_is_audited(admin_browser, site):
    response = admin_browser.post(f"/admin/devices/site/{site.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Site.objects.exists()
    assert audit_of("site.delete") == [("ada", "lab-1", {})]


def test_deleting_sites_from_the_list_audits_each(admin_browser, site, other_site):
    response = admin_browser.post(
        "/admin/devices/site/",
        {"action": "delete_selected", "_selected_action": [site.pk, other_site.pk], "post": "yes"},
    )

    assert response.status_code == 302
    assert not Site.objects.exists()
    assert sorted(target for _, target, _ in audit_of("site.delete")) == ["lab-1", "lab-2"]


def test_adding_and_revoking_a_token_is_audited(browser, site):
    expires = timezone.localtime(timezone.now() + timedelta(hours=1))
    browser.post(
        "/admin/devices/enrollmenttoken/add/",
        {
            "site": site.pk,
            "label": "bench",
            "expires_at_0": expires.strftime("%Y-%m-%d"),
            "expires_at_1": expires.strftime("%H:%M:%S"),
            "max_uses": 2,
        },
    )
    token = EnrollmentToken.objects.get()

    browser.post(
        "/admin/devices/enrollmenttoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
    )

    assert [a for a, _, _ in audit_of("enrollment_token.create")] == ["otto"]
    assert audit_of("enrollment_token.revoke") == [("otto", str(token.pk), {})]


def test_deleting_a_token_is_audited(admin_browser, site, admin_user):
    issued = services.enrollment_token_create(actor=admin_user, site=site, label="old")
    pk = issued.enrollment.pk

    response = admin_browser.post(f"/admin/devices/enrollmenttoken/{pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not EnrollmentToken.objects.exists()
    assert audit_of("enrollment_token.delete") == [("ada", str(pk), {})]


def test_key_and_decommission_actions_are_audited(browser, make_agent):
    devices = [make_agent("pi-1").device, make_agent("pi-2").device]
    selected = [d.pk for d in devices]

    for action in ["rotate_keys", "revoke_keys", "decommission"]:
        browser.post("/admin/devices/device/", {"action": action, "_selected_action": selected})

    for action in ["device.rotate_key", "device.revoke_keys", "device.decommission"]:
        assert sorted((a, t) for a, t, _ in audit_of(action)) == [
            ("otto", "pi-1"),
            ("otto", "pi-2"),
        ]


def test_a_queue_action_is_one_audited_bulk_request(browser, make_agent):
    devices = [make_agent("pi-1").device, make_agent("pi-2").device]

    browser.post(
        "/admin/devices/device/",
        {"action": "queue_ping", "_selected_action": [d.pk for d in devices]},
    )

    group = CommandGroup.objects.get()
    assert group.command_type == "ping"
    assert sorted(group.target["device_ids"]) == ["pi-1", "pi-2"]
    assert Command.objects.filter(group=group).count() == 2
    [(actor, target, data)] = audit_of("command.queue_bulk")
    assert (actor, target, data["devices"]) == ("otto", str(group.public_id), 2)


def test_saving_a_tokens_page_changes_nothing(browser, site, operator):
    issued = services.enrollment_token_create(actor=operator, site=site, label="bench")
    url = f"/admin/devices/enrollmenttoken/{issued.enrollment.pk}/change/"

    response = browser.post(url, {"_save": "Save"})

    assert response.status_code == 302
    assert list(EnrollmentToken.objects.values_list("pk", "label")) == [
        (issued.enrollment.pk, "bench")
    ]
    assert [a for a, _, _ in audit_of("enrollment_token.create")] == ["otto"]
