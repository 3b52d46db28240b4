"""Content-Security-Policy on the admin and the API docs; the docs load nothing from elsewhere.

Lab networks are often offline, and a strict policy allows scripts only from
this server: Swagger UI comes from the drf-spectacular-sidecar package and is
served by whitenoise like every other static file.
"""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from analytics import services as analytics_services
from devices.auth import DeviceIdentity

ASSET = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""")
EXTERNAL = re.compile(r"""(?:src|href|url)\s*[=(]\s*["']?(?:https?:)?//""")


def csp_directives(response) -> dict[str, list[str]]:  # noqa: ANN001
    header = response.headers["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def assert_strict(response) -> None:  # noqa: ANN001
    directives = csp_directives(response)
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]  # no inline script, no eval, no CDN
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert not [value for values in directives.values() for value in values if "//" in value]


def inline_scripts(html: str) -> list[str]:
    """Scripts a strict script-src blocks: inline bodies and on* handlers."""
    bodies = re.findall(r"<script\b(?![^>]*\bsrc=)[^>]*>(.*?)</script>", html, re.S)
    handlers = re.findall(r"""\son[a-z]+\s*=\s*["']""", html)
    return [body for body in bodies if body.strip()] + handlers


@pytest.fixture
def browser(admin_user) -> Client:
    browser = Client()
    browser.force_login(admin_user)
    return browser


def test_the_docs_page_has_a_strict_policy_and_loads_only_its_own_assets(client, db):
    response = client.get("/api/docs")

    assert response.status_code == 200
    assert_strict(response)
    html = response.content.decode()
    assert not EXTERNAL.search(html), "the docs page references another host"
    assert not inline_scripts(html)
    assets = ASSET.findall(html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets), assets
    assert any(a.endswith("swagger-ui.css") for a in assets), assets
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        body = b"".join(served.streaming_content) if served.streaming else served.content
        assert body, asset


def test_the_docs_init_script_is_a_same_origin_script_that_loads_the_local_schema(client, db):
    html = client.get("/api/docs").content.decode()
    script_url = next(a for a in ASSET.findall(html) if "script" in a and "swagger-ui" not in a)

    script = client.get(script_url.replace("&amp;", "&"))

    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "/api/schema" in script.content.decode()
    # Swagger UI would otherwise load a validator badge from validator.swagger.io
    assert '"validatorUrl": null' in script.content.decode()


def test_the_admin_login_page_has_the_policy_and_no_inline_script(db):
    response = Client().get("/admin/login/")

    assert response.status_code == 200
    assert_strict(response)
    assert not inline_scripts(response.content.decode())


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/devices/device/",
        "/admin/devices/device/add/",
        "/admin/commands/command/",
        "/admin/devices/enrollmenttoken/add/",
        "/admin/knox/authtoken/",
        "/admin/axes/accessattempt/",
    ],
)
def test_admin_pages_render_under_the_policy(browser, path):
    response = browser.get(path)

    assert response.status_code == 200
    assert_strict(response)
    html = response.content.decode()
    assert not inline_scripts(html)
    assert not EXTERNAL.search(html)


def test_the_device_page_with_charts_and_heatmap_renders_under_the_policy(browser, agent):
    identity = DeviceIdentity(agent.device.pk, agent.device.public_id, agent.device.site_id, 0)
    now = timezone.now()
    analytics_services.telemetry_ingest(
        identity=identity,
        samples=[(now - timedelta(minutes=m), {"cpu_percent": 5.0 + m}) for m in range(10)],
    )
    analytics_services.thermal_frame_store(
        identity=identity, ts=now, width=32, height=24, values=[20.0 + i % 7 for i in range(768)]
    )

    response = browser.get(f"/admin/devices/device/{agent.device.pk}/change/")

    assert response.status_code == 200
    assert_strict(response)
    html = response.content.decode()
    assert 'class="pygal-chart"' in html and 'class="homepot-heatmap"' in html
    assert not inline_scripts(html)
    assert not EXTERNAL.search(html.replace('xmlns="http://www.w3.org/2000/svg"', ""))
    # pygal styles its chart with a <style> inside the SVG: the policy must let it apply
    style_src = csp_directives(response)["style-src"]
    nonces = {f"'nonce-{n}'" for n in re.findall(r'<style[^>]*\snonce="([^"]+)"', html)}
    assert "'unsafe-inline'" in style_src or (nonces and nonces <= set(style_src))


def test_api_responses_carry_the_policy_too(client, db):
    response = client.get("/api/v1/devices")

    assert response.status_code == 401
    assert "Content-Security-Policy" in response.headers
