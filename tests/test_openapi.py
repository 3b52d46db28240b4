"""GET /api/schema and /api/docs"""

import yaml
from django.core.management import call_command


def test_the_schema_documents_the_device_headers_and_enrollment_token(client, db):
    response = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi")

    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    schemes = schema["components"]["securitySchemes"]
    assert schemes["DeviceId"]["name"] == "X-Device-ID"
    assert schemes["DeviceApiKey"]["name"] == "X-API-Key"
    register = schema["paths"]["/api/v1/devices/sites/{site_id}/devices"]["post"]
    assert "X-Enrollment-Token" in [p["name"] for p in register["parameters"]]
    heartbeat = schema["paths"]["/api/v1/devices/heartbeat"]["post"]
    assert heartbeat["security"] == [{"DeviceId": [], "DeviceApiKey": []}]


def test_the_schema_has_no_generator_warnings(db, tmp_path):
    # --fail-on-warn turns every drf-spectacular warning into an error
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))


def test_the_docs_page_is_served(client, db):
    assert client.get("/api/docs").status_code == 200
