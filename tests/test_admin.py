"""The Django admin: fleet pages, secrets shown once, role-limited actions."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from devices.models import AuditEntry, Device, DeviceCredential, EnrollmentToken

SECRET_RE = re.compile(r'<code class="homepot-secret">([^<]+)</code>')


@pytest.fixture
def browser(client) -> Client:
    return Client()


def secrets_on(response) -> list[str]:
    return SECRET_RE.findall(response.content.decode())


def test_an_operator_browses_the_fleet(browser, operator, agent):
    browser.force_login(operator)

    assert browser.get("/admin/").status_code == 200
    changelist = browser.get("/admin/devices/device/?status__exact=new")
    assert changelist.status_code == 200
    assert "pi-1" in changelist.content.decode()
    page = browser.get(f"/admin/devices/device/{agent.device.pk}/change/")
    assert page.status_code == 200
    assert agent.api_key not in page.content.decode()


def test_rotating_keys_in_the_admin_shows_each_new_key_once(browser, operator, agent, client):
    browser.force_login(operator)

    response = browser.post(
        "/admin/devices/device/",
        {"action": "rotate_keys", "_selected_action": [agent.device.pk]},
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [new_key] = secrets_on(response)
    beat = client.post("/api/v1/devices/heartbeat", HTTP_X_DEVICE_ID="pi-1", HTTP_X_API_KEY=new_key)
    assert beat.status_code == 200
    assert (
        new_key
        not in browser.get(f"/admin/devices/device/{agent.device.pk}/change/").content.decode()
    )


def test_a_viewer_has_no_key_actions(browser, viewer, agent):
    browser.force_login(viewer)

    response = browser.post(
        "/admin/devices/device/",
        {"action": "rotate_keys", "_selected_action": [agent.device.pk]},
    )

    assert secrets_on(response) == []
    assert DeviceCredential.objects.get().revoked_at is None
    assert 'value="rotate_keys"' not in browser.get("/admin/devices/device/").content.decode()


def test_adding_a_device_in_the_admin_shows_its_key_once(browser, operator, site, client):
    browser.force_login(operator)

    response = browser.post(
        "/admin/devices/device/add/",
        {
            "public_id": "pi-admin",
            "name": "Added by hand",
            "device_type": "raspberry_pi",
            "site": site.pk,
            "checkin_interval": "00:01:00",
            "credentials-TOTAL_FORMS": 0,
            "credentials-INITIAL_FORMS": 0,
            "events-TOTAL_FORMS": 0,
            "events-INITIAL_FORMS": 0,
        },
    )

    assert response.status_code == 200, response.content[:2000]
    [api_key] = secrets_on(response)
    assert Device.objects.get().public_id == "pi-admin"
    beat = client.post(
        "/api/v1/devices/heartbeat", HTTP_X_DEVICE_ID="pi-admin", HTTP_X_API_KEY=api_key
    )
    assert beat.status_code == 200


def test_creating_an_enrollment_token_shows_it_once(browser, operator, site, client):
    browser.force_login(operator)
    expires = timezone.localtime(timezone.now() + timedelta(hours=1))

    response = browser.post(
        "/admin/devices/enrollmenttoken/add/",
        {
            "site": site.pk,
            "label": "bench",
            "expires_at_0": expires.strftime("%Y-%m-%d"),
            "expires_at_1": expires.strftime("%H:%M:%S"),
            "max_uses": 3,
        },
        follow=True,  # to the token's own page, where it is shown once
    )

    assert response.status_code == 200
    [token] = secrets_on(response)
    assert EnrollmentToken.objects.get().max_uses == 3
    registered = client.post(
        "/api/v1/devices/sites/lab-1/devices",
        {"device_id": "pi-7", "name": "Pi 7", "device_type": "raspberry_pi"},
        format="json",
        HTTP_X_ENROLLMENT_TOKEN=token,
    )
    assert registered.status_code == 201


def test_the_audit_trail_is_read_only(browser, admin_user, agent):
    browser.force_login(admin_user)
    entry = AuditEntry.objects.first()

    assert browser.get("/admin/devices/auditentry/").status_code == 200
    assert browser.get("/admin/devices/auditentry/add/").status_code == 403
    assert (
        browser.post(f"/admin/devices/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert AuditEntry.objects.filter(pk=entry.pk).exists()
