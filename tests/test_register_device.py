"""POST /api/v1/devices/sites/{site_id}/devices"""

import hashlib
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from devices import services
from devices.keys import sha256_hex
from devices.models import AuditEntry, Device, DeviceCredential, EnrollmentToken

URL = "/api/v1/devices/sites/{}/devices"
BODY = {
    "device_id": "pos-terminal-001",
    "name": "Main Checkout POS",
    "device_type": "pos_terminal",
    "ip_address": "192.168.1.100",
}


@pytest.fixture
def token(site, operator) -> str:
    return services.enrollment_token_create(actor=operator, site=site, max_uses=2).token


def register(client, site_id="lab-1", body=None, token=None):
    headers = {"HTTP_X_ENROLLMENT_TOKEN": token} if token else {}
    return client.post(URL.format(site_id), body or BODY, format="json", **headers)


def _secret(api_key: str) -> str:
    return api_key[len("hpk_") + 12 + 1 :]


def test_it_registers_with_the_seed_payload_and_returns_the_key_once(client, site, token, operator):
    response = register(client, token=token)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["device_id"] == "pos-terminal-001"
    assert body["site"] == "lab-1"
    assert body["status"] == "new"
    assert body["api_key"].startswith("hpk_")
    # 32 random bytes, urlsafe base64 without padding
    assert len(_secret(body["api_key"])) == 43
    device = Device.objects.get(public_id="pos-terminal-001")
    assert device.ip_address == "192.168.1.100"
    client.force_authenticate(operator)
    for url in ["/api/v1/devices/pos-terminal-001", "/api/v1/devices"]:
        listed = client.get(url)
        assert listed.status_code == 200
        assert _secret(body["api_key"]) not in listed.content.decode()


def test_the_key_is_stored_only_as_a_keyed_hash(client, site, token):
    api_key = register(client, token=token).json()["api_key"]
    secret = _secret(api_key)

    credential = DeviceCredential.objects.get()
    # HMAC-SHA256 under the server's hash key (tests/test_cold_start.py: a dump
    # alone cannot authenticate), not an unkeyed digest anyone could recompute.
    assert re.fullmatch(r"hmac-sha256\$[0-9a-f]{8}\$[0-9a-f]{64}", credential.key_hash)
    assert sha256_hex(secret) not in credential.key_hash
    assert hashlib.sha256(api_key.encode()).hexdigest() not in credential.key_hash
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT * FROM {quoted}")  # noqa: S608 (table names from introspection)
            dump = repr(cursor.fetchall())
            assert secret not in dump, f"key secret found in {table}"
            assert api_key not in dump, f"api key found in {table}"


def test_the_token_use_is_counted_and_audited(client, site, token):
    register(client, token=token)

    enrollment = EnrollmentToken.objects.get()
    assert enrollment.uses == 1
    entry = AuditEntry.objects.get(action="device.register")
    assert entry.actor == "pos-terminal-001"
    assert entry.data["enrollment_token"] == enrollment.pk


def test_an_operator_registers_without_a_token(client, site, operator):
    client.force_authenticate(operator)

    response = register(client)

    assert response.status_code == 201
    assert AuditEntry.objects.get(action="device.register").actor_user == operator


def test_there_is_no_open_registration(client, site):
    response = register(client)

    assert response.status_code == 401
    assert not Device.objects.exists()


def test_a_viewer_cannot_register(client, site, viewer):
    client.force_authenticate(viewer)

    assert register(client).status_code == 403
    assert not Device.objects.exists()


def test_a_duplicate_device_id_is_409_and_does_not_use_the_token(client, site, token):
    register(client, token=token)

    response = register(client, token=token)

    assert response.status_code == 409
    assert response.json()["code"] == "device_exists"
    assert EnrollmentToken.objects.get().uses == 1


def test_an_unknown_site_is_404(client, site, token):
    assert register(client, site_id="nowhere", token=token).status_code == 404


def test_an_unknown_token_is_401(client, site):
    response = register(client, token="het_not-a-real-token")

    assert response.status_code == 401
    assert "not recognised" in response.json()["detail"]


def test_an_expired_token_is_401(client, site, token):
    EnrollmentToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = register(client, token=token)

    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"
    assert not Device.objects.exists()


def test_a_revoked_token_is_401(client, site, token, operator):
    services.enrollment_token_revoke(actor=operator, enrollment=EnrollmentToken.objects.get())

    response = register(client, token=token)

    assert response.status_code == 401
    assert response.json()["code"] == "token_revoked"


def test_a_used_up_token_is_403(client, site, token):
    register(client, token=token, body={**BODY, "device_id": "a"})
    register(client, token=token, body={**BODY, "device_id": "b"})

    response = register(client, token=token, body={**BODY, "device_id": "c"})

    assert response.status_code == 403
    assert response.json()["code"] == "token_used_up"
    assert not Device.objects.filter(public_id="c").exists()


def test_a_token_of_another_site_is_403(client, site, other_site, token):
    response = register(client, site_id="lab-2", token=token)

    assert response.status_code == 403
    assert response.json()["code"] == "token_wrong_site"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("device_id", ""),
        ("device_id", "has space"),
        ("device_id", "x" * 65),
        ("device_id", "pending"),
        ("name", ""),
        ("device_type", "not a slug"),
        ("ip_address", "999.1.1.1"),
        ("checkin_interval_seconds", 1),
        ("attributes", "not-an-object"),
    ],
)
def test_invalid_fields_are_400_naming_them(client, site, token, field, value):
    response = register(client, token=token, body={**BODY, field: value})

    assert response.status_code == 400
    assert field in response.json()
    assert not Device.objects.exists()
    assert EnrollmentToken.objects.get().uses == 0


def test_missing_fields_are_400_naming_them(client, site, token):
    response = register(client, token=token, body={"device_id": "x"})

    assert response.status_code == 400
    assert set(response.json()) == {"name", "device_type"}
