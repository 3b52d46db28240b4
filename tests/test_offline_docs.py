"""GET /api/docs (Swagger UI) and /api/redoc (Redoc): served by this server, and
every address the pages and their scripts and styles load is on this host."""

import re
from urllib.parse import urljoin

import pytest
from django.test import Client

from tests.test_security_headers import assert_strict, csp_directives, inline_scripts

# Every src=, href= and url(...) of a page or a stylesheet.
REFERENCE = re.compile(r"""(?:\bsrc|\bhref)\s*=\s*["']([^"']*)["']|url\(\s*["']?([^"')]*)""")
# Addresses that a script would load: images, fonts, styles, scripts from another host.
LOADED_FROM_ELSEWHERE = re.compile(
    r"""["'](?:https?:)?//[^"']*\.(?:svg|png|jpe?g|gif|woff2?|ttf|css|js)["']"""
    r"""|fonts\.googleapis|fonts\.gstatic|cdn\.redoc\.ly|cdn\.jsdelivr|unpkg\.com"""
)


@pytest.fixture
def reader(db) -> Client:  # noqa: ANN001
    return Client()


def references(text: str) -> list[str]:
    return [src or url for src, url in REFERENCE.findall(text) if (src or url)]


def is_same_origin(reference: str) -> bool:
    if reference.startswith(("data:", "#")):
        return True
    return not re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", reference, re.I)


def body_of(response) -> str:  # noqa: ANN001
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode(errors="replace")  # a favicon is binary; its bytes matter not


def _assets_of(reader: Client, page_path: str) -> dict[str, str]:
    """The page and each same-origin file it loads (scripts, styles), by address."""
    page = reader.get(page_path)
    assert page.status_code == 200
    loaded = {page_path: body_of(page)}
    for reference in references(loaded[page_path]):
        address = urljoin(page_path, reference.replace("&amp;", "&"))
        if reference.startswith("data:") or address in loaded:
            continue
        served = reader.get(address)
        assert served.status_code == 200, address
        loaded[address] = body_of(served)
    return loaded


@pytest.mark.parametrize("path", ["/api/docs", "/api/redoc"])
def test_the_docs_page_references_only_this_host(reader, path):
    response = reader.get(path)

    assert response.status_code == 200
    html = body_of(response)
    found = references(html)
    assert found, "the page loads its viewer from somewhere"
    assert [r for r in found if not is_same_origin(r)] == []
    assert not inline_scripts(html)


@pytest.mark.parametrize("path", ["/api/docs", "/api/redoc"])
def test_the_docs_page_has_a_self_only_policy(reader, path):
    response = reader.get(path)

    assert_strict(response)
    directives = csp_directives(response)
    assert directives["font-src"] == ["'self'"]
    assert directives["img-src"] == ["'self'", "data:"]
    assert directives["connect-src"] == ["'self'"]


@pytest.mark.parametrize("path", ["/api/docs", "/api/redoc"])
def test_the_scripts_and_styles_of_the_docs_load_nothing_from_another_host(reader, path):
    loaded = _assets_of(reader, path)

    assert len(loaded) >= 2  # the page and at least its viewer's script
    for address, text in loaded.items():
        assert not LOADED_FROM_ELSEWHERE.search(text), (address, LOADED_FROM_ELSEWHERE.search(text))
        if address.endswith(".css"):
            assert [r for r in references(text) if not is_same_origin(r)] == [], address


def test_redoc_reads_the_schema_of_this_server(reader):
    html = body_of(reader.get("/api/redoc"))

    assert '<redoc spec-url="/api/schema" disable-search></redoc>' in html
    assert '<script src="/api/redoc/redoc.standalone.js"></script>' in html
    assert "fonts.googleapis.com" not in html


def test_the_redoc_bundle_is_the_sidecars_with_the_logo_inline(reader):
    response = reader.get("/api/redoc/redoc.standalone.js")

    script = body_of(response)
    assert response["Content-Type"].startswith("text/javascript")
    assert "Redoc" in script and len(script) > 500_000  # the whole bundle
    assert "cdn.redoc.ly" not in script
    assert "data:image/svg+xml," in script
    assert "sourceMappingURL=redoc.standalone.js.map" not in script  # not served here


def test_the_redoc_bundle_is_cached_by_etag(reader):
    first = reader.get("/api/redoc/redoc.standalone.js")

    again = reader.get("/api/redoc/redoc.standalone.js", HTTP_IF_NONE_MATCH=first["ETag"])

    assert again.status_code == 304
    assert "max-age" in first["Cache-Control"]


# --- in a real Chromium (the browser suite's harness: marker browser) ---------------------

from playwright.sync_api import Page, expect  # noqa: E402

from tests.browser.conftest import (  # noqa: E402, F401 (fixtures)
    PageWatch,
    browser_context_args,
    browser_type_launch_args,
    page_watch,
    watched_page,
)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_redoc_renders_the_schema_in_a_browser_asking_only_this_server(
    watched_page: Page,  # noqa: F811 (the imported fixtures)
    page_watch: PageWatch,  # noqa: F811
):
    responses = []
    watched_page.on("response", lambda response: responses.append(response))

    watched_page.goto("/api/redoc")

    # Redoc built the page from /api/schema: its script ran under the CSP.
    expect(watched_page.locator(".api-info h1")).to_contain_text("HOMEPOT API")
    expect(watched_page.locator("text=API docs by Redocly")).to_be_visible()
    assert any(r.url.endswith("/api/schema") and r.ok for r in responses)
    page_watch.assert_clean()
