"""Offline API docs: Redoc from drf-spectacular-sidecar, with nothing from another host.

drf-spectacular's Redoc page loads Google web fonts and runs an inline script
(blocked by our CSP); the Redoc bundle itself draws the Redocly logo from
cdn.redoc.ly in its sidebar, whatever the options. So the page is our own
template and the bundle is served through a view that points that one image at
an inline SVG (img-src allows data:). Swagger UI (SpectacularSwaggerSplitView)
needs none of this: its files come from the sidecar and its init script is a file.
"""

import hashlib
from functools import cache

from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from drf_spectacular.views import SpectacularRedocView

REDOC_BUNDLE = "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"
REDOCLY_LOGO_URL = "https://cdn.redoc.ly/redoc/logo-mini.svg"
# An empty SVG where the logo was: the attribution text stays, nothing is fetched.
BLANK_SVG = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"
SOURCE_MAP_COMMENT = "//# sourceMappingURL=redoc.standalone.js.map"


class RedocView(SpectacularRedocView):
    template_name = "homepot/redoc.html"


@cache
def _offline_redoc_bundle() -> tuple[bytes, str]:
    """The sidecar's bundle without the logo URL (and without a source map that is
    not served here); read once per process. Returns the body and its ETag."""
    path = finders.find(REDOC_BUNDLE)
    if path is None:
        raise FileNotFoundError(f"{REDOC_BUNDLE}: is drf-spectacular-sidecar installed?")
    with open(path, encoding="utf-8") as bundle:
        source = bundle.read()
    if REDOCLY_LOGO_URL not in source:
        # A new sidecar release changed the bundle: the docs test says what to check.
        raise ValueError(f"{REDOC_BUNDLE} no longer names {REDOCLY_LOGO_URL}")
    body = source.replace(REDOCLY_LOGO_URL, BLANK_SVG).replace(SOURCE_MAP_COMMENT, "")
    encoded = body.encode()
    return encoded, '"' + hashlib.sha256(encoded).hexdigest()[:32] + '"'


def redoc_bundle(request: HttpRequest) -> HttpResponse:
    body, etag = _offline_redoc_bundle()
    if request.headers.get("If-None-Match") == etag:
        return HttpResponseNotModified(headers={"ETag": etag})
    response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["ETag"] = etag
    response["Cache-Control"] = "public, max-age=86400"
    return response
