"""Every admin page a person can reach from the navigation, in a real Chromium: no
request to another host, no console error (a CSP violation is one), and the
console's own pages fit the window from 1024 to 1920 px wide."""

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import PageWatch, admin_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# django-celery-beat's own form runs an inline script, which the CSP blocks (the
# console says so). Known, not ours to patch here: its own test below says so
# until someone fixes it (then that test passes and its xfail comes off).
INLINE_SCRIPT_PAGES = ["/admin/django_celery_beat/periodictask/add/"]


def navigation_links(page: Page) -> list[str]:
    """The admin's sidebar links (every model's list and add page), in order, once each."""
    page.goto("/admin/devices/device/")
    hrefs = page.locator("#nav-sidebar a[href^='/admin/']").evaluate_all(
        "links => links.map(link => link.getAttribute('href'))"
    )
    return list(dict.fromkeys(hrefs))


def visit(page: Page, href: str) -> None:
    # goto waits for the load event: the page's scripts have run (a CSP violation is
    # reported by then).
    response = page.goto(href)
    assert response is not None and response.status == 200, href


def test_every_page_in_the_navigation_loads_only_from_this_server_without_errors(
    watched_page: Page, admin_user, make_agent, enqueue
):
    agent = make_agent("pi-nav")
    enqueue(agent, "ping")
    admin_login(watched_page, admin_user)
    links = navigation_links(watched_page)
    assert "/admin/devices/device/" in links and len(links) > 10, links

    for href in links + [f"/admin/devices/device/{agent.device.pk}/change/"]:
        if href not in INLINE_SCRIPT_PAGES:
            visit(watched_page, href)
    # page_watch fails the test on any console error or request elsewhere.


@pytest.mark.xfail(reason="django-celery-beat's periodic task form has an inline script")
@pytest.mark.parametrize("href", INLINE_SCRIPT_PAGES)
def test_pages_with_an_inline_script_break_no_csp(
    page: Page, page_watch: PageWatch, admin_user, href: str
):
    admin_login(page, admin_user, next_path=href)
    page.wait_for_load_state("networkidle")

    try:
        page_watch.assert_clean()
    finally:
        page_watch.console_errors.clear()  # said once, here: not again at teardown


def overflow(page: Page) -> int:
    """How far the page is wider than the window (0: no horizontal scroll bar)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


WIDE_PAGES = [
    (width, name)
    for width in (1024, 1440, 1920)
    for name in ("dashboard", "device list", "device page")
]


@pytest.mark.parametrize(("width", "name"), WIDE_PAGES)
def test_the_consoles_pages_fit_the_window(operator_page: Page, make_agent, width: int, name: str):
    agent = make_agent("pi-wide", name="a device with a long name " * 3)
    href = {
        "dashboard": "/admin/",
        "device list": "/admin/devices/device/",
        "device page": f"/admin/devices/device/{agent.device.pk}/change/",
    }[name]
    operator_page.set_viewport_size({"width": width, "height": 900})

    operator_page.goto(href)

    assert overflow(operator_page) <= 0, f"{href} is wider than {width} px"
