"""POST /api/v1/devices/{device_id}/rotate-key, /revoke and /decommission"""

from datetime import timedelta

from django.utils import timezone

from devices.models import AuditEntry, Device, DeviceCredential


def rotate(client, device_id: str, **headers):
    return client.post(f"/api/v1/devices/{device_id}/rotate-key", **headers)


def heartbeat(client, device_id: str, api_key: str):
    return client.post(
        "/api/v1/devices/heartbeat", HTTP_X_DEVICE_ID=device_id, HTTP_X_API_KEY=api_key
    )


def test_an_operator_rotates_a_key_and_sees_it_once(client, agent, operator):
    client.force_authenticate(operator)

    response = rotate(client, "pi-1")

    assert response.status_code == 201
    body = response.json()
    assert body["api_key"] != agent.api_key
    assert body["old_key_valid_until"] is None
    client.force_authenticate(None)
    assert heartbeat(client, "pi-1", body["api_key"]).status_code == 200
    assert heartbeat(client, "pi-1", agent.api_key).status_code == 401
    entry = AuditEntry.objects.get(action="device.rotate_key")
    assert (entry.actor_user, entry.target_id) == (operator, "pi-1")


def test_a_viewer_cannot_rotate_revoke_or_decommission(client, agent, viewer):
    client.force_authenticate(viewer)

    for action in ["rotate-key", "revoke", "decommission"]:
        assert client.post(f"/api/v1/devices/pi-1/{action}").status_code == 403
    assert DeviceCredential.objects.get().revoked_at is None
    assert not AuditEntry.objects.exclude(action="device.register").exists()


def test_anonymous_requests_are_401(client, agent):
    for action in ["rotate-key", "revoke", "decommission"]:
        assert client.post(f"/api/v1/devices/pi-1/{action}").status_code == 401


def test_a_device_rotates_its_own_key_with_a_grace_for_the_old_one(client, agent):
    response = rotate(client, "pi-1", **agent.headers)

    assert response.status_code == 201
    body = response.json()
    assert body["old_key_valid_until"] is not None
    assert heartbeat(client, "pi-1", agent.api_key).status_code == 200
    assert heartbeat(client, "pi-1", body["api_key"]).status_code == 200
    assert AuditEntry.objects.get(action="device.rotate_key").actor == "pi-1"


def test_a_device_cannot_rotate_another_devices_key(client, make_agent):
    mine, theirs = make_agent("pi-1"), make_agent("pi-2")

    response = rotate(client, "pi-2", **mine.headers)

    assert response.status_code == 403
    assert heartbeat(client, "pi-2", theirs.api_key).status_code == 200
    assert DeviceCredential.objects.count() == 2


def test_rotating_an_unknown_device_is_404(client, operator, site):
    client.force_authenticate(operator)

    assert rotate(client, "ghost").status_code == 404


def test_revoke_locks_the_device_out_until_rotation(client, agent, operator):
    client.force_authenticate(operator)

    response = client.post("/api/v1/devices/pi-1/revoke")

    assert response.status_code == 200
    client.force_authenticate(None)
    assert heartbeat(client, "pi-1", agent.api_key).status_code == 401
    client.force_authenticate(operator)
    new_key = rotate(client, "pi-1").json()["api_key"]
    client.force_authenticate(None)
    assert heartbeat(client, "pi-1", new_key).status_code == 200
    assert AuditEntry.objects.filter(action="device.revoke_keys", actor_user=operator).exists()


def test_decommission_revokes_keys_and_refuses_rotation(client, agent, operator):
    client.force_authenticate(operator)

    response = client.post("/api/v1/devices/pi-1/decommission")

    assert response.status_code == 200
    assert response.json()["status"] == "decommissioned"
    assert rotate(client, "pi-1").status_code == 409
    assert client.post("/api/v1/devices/pi-1/decommission").status_code == 409
    assert Device.objects.get().decommissioned_at is not None
    assert not DeviceCredential.objects.filter(revoked_at__isnull=True).exists()
    assert AuditEntry.objects.filter(action="device.decommission").count() == 1


def test_a_key_in_its_grace_period_cannot_rotate(client, agent, settings):
    settings.DEVICE_KEY_SELF_ROTATION_MIN_SECONDS = 0
    first = rotate(client, "pi-1", **agent.headers)
    assert first.status_code == 201

    # The old key still authenticates (grace), but may not mint another key:
    # otherwise a chain of keys rotated from retiring ones would never expire.
    response = rotate(client, "pi-1", **agent.headers)

    assert response.status_code == 403
    assert response.json()["code"] == "key_not_current"
    assert DeviceCredential.objects.count() == 2
    new_key = first.json()["api_key"]
    assert heartbeat(client, "pi-1", new_key).status_code == 200


def test_a_device_rotates_its_own_key_at_most_once_per_interval(
    client, agent, settings, monkeypatch
):
    settings.DEVICE_KEY_SELF_ROTATION_MIN_SECONDS = 3600
    first = rotate(client, "pi-1", **agent.headers)
    assert first.status_code == 201
    new_headers = {"HTTP_X_DEVICE_ID": "pi-1", "HTTP_X_API_KEY": first.json()["api_key"]}

    too_soon = rotate(client, "pi-1", **new_headers)

    assert too_soon.status_code == 429
    assert too_soon.json()["code"] == "rotation_too_soon"
    assert 3590 <= int(too_soon["Retry-After"]) <= 3600
    assert DeviceCredential.objects.count() == 2
    # The refused attempt left the calling key current and unexpired.
    assert DeviceCredential.objects.get(key_id=first.json()["key_id"]).expires_at is None

    an_hour_later = timezone.now() + timedelta(seconds=3601)
    monkeypatch.setattr(timezone, "now", lambda: an_hour_later)
    assert rotate(client, "pi-1", **new_headers).status_code == 201


def test_operators_rotate_without_the_device_interval(client, agent, operator, settings):
    settings.DEVICE_KEY_SELF_ROTATION_MIN_SECONDS = 3600
    assert rotate(client, "pi-1", **agent.headers).status_code == 201
    client.force_authenticate(operator)

    assert rotate(client, "pi-1").status_code == 201
    assert rotate(client, "pi-1").status_code == 201
