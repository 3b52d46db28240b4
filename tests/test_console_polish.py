"""The admin's polish: HOMEPOT branding, one date format, action labels for people,
the enrollment token shown once at its own URL with the register command."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib import admin
from django.test import Client
from django.utils import timezone

from devices import services
from devices.models import Device, EnrollmentToken, Event
from tests.test_security_headers import inline_scripts

ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC")


@pytest.fixture
def console(operator) -> Client:  # noqa: ANN001
    console = Client()
    console.force_login(operator)
    return console


def title_of(html: str) -> str:
    return re.search(r"<title>(.*?)</title>", html, re.S).group(1).strip()


@pytest.mark.parametrize(
    "path",
    [
        # /admin/ itself is the dashboard (its own tests); the app index instead
        "/admin/devices/",
        "/admin/devices/device/",
        "/admin/devices/device/add/",
        "/admin/devices/enrollmenttoken/",
        "/admin/commands/command/",
        "/admin/analytics/alert/",
    ],
)
def test_every_admin_page_is_branded_homepot(console, path):
    html = console.get(path).content.decode()

    assert title_of(html).endswith("| HOMEPOT")
    assert '<div id="site-name"><a href="/admin/">HOMEPOT</a></div>' in html
    assert "Django administration" not in html
    assert "Django site admin" not in html
    assert 'href="/static/homepot/console.css"' in html


def test_the_login_page_is_branded_too(db):
    html = Client().get("/admin/login/").content.decode()

    assert title_of(html).endswith("| HOMEPOT")
    assert "Django administration" not in html


def test_the_console_stylesheet_is_served_by_this_server(console):
    response = console.get("/static/homepot/console.css")

    assert response.status_code == 200
    css = b"".join(response.streaming_content).decode()
    assert "#changelist-form .results" in css
    assert "//" not in css.replace("/*", "").replace("*/", "")  # no URL of another host


def test_times_read_the_same_in_lists_and_detail_pages(console, agent, admin_user):
    moment = datetime(2026, 11, 30, 14, 5, 9, tzinfo=UTC)
    Event.objects.filter(device=agent.device).update(created_at=moment)
    Device.objects.filter(pk=agent.device.pk).update(created_at=moment)
    admin_console = Client()
    admin_console.force_login(admin_user)

    listed = admin_console.get("/admin/devices/event/").content.decode()
    detail = console.get(f"/admin/devices/device/{agent.device.pk}/change/").content.decode()

    assert "2026-11-30 14:05:09 UTC" in listed
    assert '<div class="readonly">2026-11-30 14:05:09 UTC</div>' in detail
    assert "Nov. 30, 2026" not in listed + detail


def test_the_device_list_shows_last_seen_in_the_one_format(console, agent, client):
    client.post("/api/v1/devices/heartbeat", **agent.headers)

    html = console.get("/admin/devices/device/").content.decode()

    assert ISO_TIME.search(html)
    assert " p.m." not in html and " a.m." not in html


def _all_actions() -> list[tuple[str, str, object, str]]:
    found = []
    for model, model_admin in admin.site._registry.items():
        for func, name, description in model_admin._get_base_actions():
            found.append((model._meta.label, name, func, str(description)))
    return found


def test_every_admin_action_has_a_label_written_for_people():
    actions = _all_actions()

    assert len(actions) > 20
    for label, name, func, description in actions:
        where = f"{label}.{name}"
        # Django falls back to the function's name when no description is given.
        assert hasattr(func, "short_description"), where
        assert description.lower() != name.replace("_", " ").lower(), where
        doc = (func.__doc__ or "").strip()
        assert not doc or description != doc.splitlines()[0], where
        assert len(description.split()) >= 2, where
        assert not description.endswith("."), where


@pytest.mark.parametrize(
    "name, expected",
    [
        ("rotate_keys", "Rotate keys of the selected devices (shows the new keys once)"),
        ("queue_ping", "Queue a ping"),
        ("queue_restart_service", "Queue a service restart…"),
        ("decommission", "Decommission the selected devices"),
    ],
)
def test_device_actions_read_as_menu_items(console, agent, name, expected):
    html = console.get("/admin/devices/device/").content.decode()

    assert f'<option value="{name}">{expected}</option>' in html


def _add_token(console: Client, site, **extra) -> object:  # noqa: ANN001
    expires = timezone.localtime(timezone.now() + timedelta(hours=2))
    return console.post(
        "/admin/devices/enrollmenttoken/add/",
        {
            "site": site.pk,
            "label": "rack 3",
            "expires_at_0": expires.strftime("%Y-%m-%d"),
            "expires_at_1": expires.strftime("%H:%M:%S"),
            "max_uses": 5,
        },
        **extra,
    )


def _token_in(html: str) -> str | None:
    match = re.search(r'<code class="homepot-secret">(het_[^<]+)</code>', html)
    return match and match.group(1)


def test_a_new_enrollment_token_goes_to_its_own_page(console, site):
    response = _add_token(console, site)

    enrollment = EnrollmentToken.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/devices/enrollmenttoken/{enrollment.pk}/issued/"


def test_the_token_page_shows_the_token_once_with_the_register_command(
    console, site, client, settings
):
    settings.ALLOWED_HOSTS = ["fleet.lab", "testserver"]
    location = _add_token(console, site)["Location"]

    first = console.get(location, HTTP_HOST="fleet.lab:8443", secure=True)
    html = first.content.decode()
    token = _token_in(html)

    assert first.status_code == 200
    assert "no-store" in first["Cache-Control"]
    assert token
    assert (
        f"homepot-agent register --server https://fleet.lab:8443 --site lab-1 --token {token}"
        in html
    )
    assert 'src="/static/homepot/copy.js"' in html
    assert html.count("data-copy-target=") == 2
    assert not inline_scripts(html)
    registered = client.post(
        "/api/v1/devices/sites/lab-1/devices",
        {"device_id": "pi-9", "name": "Pi 9", "device_type": "raspberry_pi"},
        format="json",
        HTTP_X_ENROLLMENT_TOKEN=token,
    )
    assert registered.status_code == 201

    reloaded = console.get(location).content.decode()
    assert _token_in(reloaded) is None
    assert token not in reloaded
    assert "shown once" in reloaded


def test_another_operator_never_sees_the_token(console, site, admin_user):
    location = _add_token(console, site)["Location"]
    other = Client()
    other.force_login(admin_user)

    assert _token_in(other.get(location).content.decode()) is None
    assert _token_in(console.get(location).content.decode())


def test_the_token_page_of_an_unknown_token_is_404(console, site):
    assert console.get("/admin/devices/enrollmenttoken/999999/issued/").status_code == 404
    assert console.get("/admin/devices/enrollmenttoken/abc/issued/").status_code == 404


def test_the_token_page_needs_a_staff_login(db, site, operator):
    issued = services.enrollment_token_create(actor=operator, site=site)

    response = Client().get(f"/admin/devices/enrollmenttoken/{issued.enrollment.pk}/issued/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_copy_script_is_served_by_this_server(console):
    response = console.get("/static/homepot/copy.js")

    assert response.status_code == 200
    script = b"".join(response.streaming_content).decode()
    assert "data-copy-target" in script or "copyTarget" in script
    assert "execCommand" in script  # plain-http lab servers have no Clipboard API


# --- in a real Chromium (the browser suite's harness: marker browser) ---------------------

from playwright.sync_api import Page, expect  # noqa: E402

from tests.browser.conftest import (  # noqa: E402, F401 (fixtures)
    PageWatch,
    admin_login,
    browser_context_args,
    browser_type_launch_args,
    page_watch,
    watched_page,
)

PAGE_WIDTH = "document.documentElement.scrollWidth"
LIST_WIDTHS = """(() => {
  const box = document.querySelector("#changelist-form .results");
  return [box.scrollWidth, box.clientWidth];
})()"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [1024, 1400, 1920])
def test_the_lists_fit_the_window_and_scroll_inside_their_box(
    watched_page: Page,  # noqa: F811 (the imported fixtures)
    page_watch: PageWatch,  # noqa: F811
    make_agent,
    enqueue,
    admin_user,
    width,
):
    for n in range(5):
        agent = make_agent(f"pi-{n}-" + "x" * 50, name="A device with a long descriptive name " * 3)
        enqueue(agent, "restart_service", {"service": "long-service-name-" + "y" * 60 + ".service"})
    watched_page.set_viewport_size({"width": width, "height": 900})

    admin_login(watched_page, admin_user, next_path="/admin/devices/device/")
    expect(watched_page.locator("#result_list")).to_be_visible()
    assert watched_page.evaluate(PAGE_WIDTH) <= width
    # Long names wrap in their cells: the device list needs no sideways scrolling
    # (Django's own sheets alone: 1071 px of table in a 751 px box at 1400).
    if width >= 1400:
        table_width, box_width = watched_page.evaluate(LIST_WIDTHS)
        assert table_width <= box_width
    for path in ["/admin/commands/command/", "/admin/devices/event/"]:
        watched_page.goto(path)
        expect(watched_page.locator("#result_list")).to_be_visible()
        assert watched_page.evaluate(PAGE_WIDTH) <= width, path  # wider lists scroll in their box
    page_watch.assert_clean()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_copy_button_copies_the_register_command(
    watched_page: Page,  # noqa: F811 (the imported fixtures)
    page_watch: PageWatch,  # noqa: F811
    operator,
    site,
):
    watched_page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    admin_login(watched_page, operator, next_path="/admin/devices/enrollmenttoken/add/")
    watched_page.select_option("#id_site", str(site.pk))
    watched_page.click("input[name=_save]")
    expect(watched_page.locator("#homepot-register-command")).to_be_visible()
    command = watched_page.locator("#homepot-register-command").inner_text().strip()

    watched_page.click("button[data-copy-target=homepot-register-command]")

    expect(watched_page.locator(".homepot-copy-status").nth(1)).to_have_text("Copied")
    assert watched_page.evaluate("navigator.clipboard.readText()") == command
    assert command.startswith("homepot-agent register --server http://localhost:")
    assert " --site lab-1 --token het_" in command
    page_watch.assert_clean()
