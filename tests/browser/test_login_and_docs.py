"""Logging in to the admin and reading the API docs, in a real Chromium."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PageWatch, admin_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_operator_logs_in_and_sees_the_admin_as_themselves(watched_page: Page, operator):
    admin_login(watched_page, operator)

    expect(watched_page.locator("#user-tools")).to_contain_text(operator.username)


def test_a_wrong_password_keeps_the_login_form_with_an_error(watched_page: Page, operator):
    watched_page.goto("/admin/login/")
    watched_page.fill("#id_username", operator.username)
    watched_page.fill("#id_password", "not-the-password")
    # The admin answers a failed login with 200 and the form; the console stays clean.
    watched_page.click("input[type=submit]")

    expect(watched_page.locator(".errornote")).to_be_visible()
    expect(watched_page).to_have_url(re.compile(r"/admin/login/$"))


def test_swagger_ui_renders_the_schema_from_this_server_only(
    watched_page: Page, page_watch: PageWatch, operator
):
    responses = []
    watched_page.on("response", lambda response: responses.append(response))

    admin_login(watched_page, operator, next_path="/api/docs")

    # Swagger UI built the operations from /api/schema: its JavaScript ran under the CSP.
    expect(watched_page.locator(".swagger-ui .opblock").first).to_be_visible()
    expect(watched_page.locator(".swagger-ui .info .title")).to_contain_text("HOMEPOT")
    assert any(r.url.endswith("/api/schema") and r.ok for r in responses)
    page_watch.assert_clean()
