"""GET/POST /api/v1/sites, GET /api/v1/sites/{site_id}, POST .../enrollment-tokens"""

from datetime import timedelta

import pytest
from django.utils import timezone

from devices.keys import sha256_hex
from devices.models import AuditEntry, EnrollmentToken, Site


def test_a_viewer_lists_and_reads_sites(client, viewer, site, other_site):
    client.force_authenticate(viewer)

    listed = client.get("/api/v1/sites")
    detail = client.get("/api/v1/sites/lab-1")

    assert listed.status_code == 200
    assert [s["site_id"] for s in listed.json()["results"]] == ["lab-1", "lab-2"]
    assert detail.json()["name"] == "Lab 1"


def test_an_unknown_site_is_404(client, viewer, site):
    client.force_authenticate(viewer)

    assert client.get("/api/v1/sites/nowhere").status_code == 404


def test_an_operator_creates_a_site(client, operator):
    client.force_authenticate(operator)

    response = client.post(
        "/api/v1/sites", {"site_id": "lab-9", "name": "Lab 9", "location": "B2"}, format="json"
    )

    assert response.status_code == 201
    assert Site.objects.get().location == "B2"
    assert AuditEntry.objects.get(action="site.create").actor_user == operator


def test_a_duplicate_site_is_409(client, operator, site):
    client.force_authenticate(operator)

    response = client.post("/api/v1/sites", {"site_id": "lab-1", "name": "x"}, format="json")

    assert response.status_code == 409
    assert Site.objects.count() == 1


def test_a_bad_site_is_400_naming_the_field(client, operator):
    client.force_authenticate(operator)

    response = client.post("/api/v1/sites", {"site_id": "not a slug", "name": ""}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"site_id", "name"}


def test_a_viewer_cannot_create_sites_or_tokens(client, viewer, site):
    client.force_authenticate(viewer)

    assert client.post("/api/v1/sites", {"site_id": "x", "name": "x"}).status_code == 403
    assert client.post("/api/v1/sites/lab-1/enrollment-tokens").status_code == 403
    assert not EnrollmentToken.objects.exists()


def test_anonymous_is_401(client, site):
    assert client.get("/api/v1/sites").status_code == 401


def test_an_operator_creates_a_token_shown_once_and_stored_hashed(client, operator, site):
    client.force_authenticate(operator)

    response = client.post(
        "/api/v1/sites/lab-1/enrollment-tokens",
        {"label": "rack A", "max_uses": 5, "expires_in_hours": 2},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    enrollment = EnrollmentToken.objects.get()
    assert enrollment.token_hash == sha256_hex(body["token"])
    assert body["token"] not in enrollment.token_hash
    assert (enrollment.max_uses, enrollment.label, enrollment.created_by) == (5, "rack A", operator)
    expected_expiry = timezone.now() + timedelta(hours=2)
    assert abs(enrollment.expires_at - expected_expiry) < timedelta(seconds=30)
    assert AuditEntry.objects.filter(action="enrollment_token.create").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [({"max_uses": 0}, "max_uses"), ({"expires_in_hours": "soon"}, "expires_in_hours")],
)
def test_bad_token_requests_are_400(client, operator, site, body, field):
    client.force_authenticate(operator)

    response = client.post("/api/v1/sites/lab-1/enrollment-tokens", body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not EnrollmentToken.objects.exists()


def test_a_token_for_an_unknown_site_is_404(client, operator, site):
    client.force_authenticate(operator)

    assert client.post("/api/v1/sites/nowhere/enrollment-tokens").status_code == 404
