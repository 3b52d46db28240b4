"""Admin URLs with a malformed object id answer 404, never 500 (issue 9)."""

import pytest
from django.test import Client

ADMIN_MODELS = [
    "devices/site",
    "devices/device",
    "devices/enrollmenttoken",
    "devices/event",
    "devices/auditentry",
    "commands/command",
    "commands/commandgroup",
]
MALFORMED_IDS = ["abc", "1.5", "%00", "1%00", "99999999999999999999999", "%F0%9F%90%8D"]


@pytest.fixture
def browser(admin_user) -> Client:
    browser = Client()
    browser.force_login(admin_user)
    return browser


@pytest.mark.parametrize("model", ADMIN_MODELS)
@pytest.mark.parametrize("object_id", MALFORMED_IDS)
@pytest.mark.parametrize("view", ["change", "history", "delete"])
def test_a_malformed_object_id_is_404(browser, model, object_id, view):
    response = browser.get(f"/admin/{model}/{object_id}/{view}/")

    assert response.status_code == 404


def test_the_reported_device_url_is_404(browser, agent):
    assert browser.get("/admin/devices/device/abc/change/").status_code == 404
    assert browser.get(f"/admin/devices/device/{agent.device.pk}/change/").status_code == 200
