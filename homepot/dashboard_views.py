"""The fleet dashboard: the admin's first page, and the poll that keeps it live.

The page renders everything once; dashboard.js then polls `dashboard-poll` with
the fingerprint and feed cursor of what it shows. Unchanged, the answer is 204
with no body (one cache read, no query beyond the session's); changed, it is
JSON with the re-rendered cards, grid and feed fragments and the toasts for the
events since the cursor.
"""

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from homepot import dashboard
from homepot.dashboard import GridFilters, Sections

FRAGMENTS = {
    "cards": "homepot/dashboard/cards.html",
    "grid": "homepot/dashboard/grid.html",
    "feed": "homepot/dashboard/feed.html",
}


def _fragments_context(request: HttpRequest) -> dict[str, Any]:
    """What the cards, grid and feed show for this user and these filters."""
    now = timezone.now()
    sections = Sections.for_user(request.user)
    filters = GridFilters.parse(request.GET)
    page, tiles = dashboard.grid_page(filters=filters, now=now, with_metrics=sections.ingest)
    return {
        "sections": sections,
        "cards": dashboard.dashboard_cards(sections=sections, now=now),
        "filters": filters,
        "page": page,
        "tiles": tiles,
        "previous_query": filters.query(page.number - 1),
        "next_query": filters.query(page.number + 1),
        "events": dashboard.recent_events(now=now) if sections.events else [],
    }


@require_GET
def dashboard_index(request: HttpRequest) -> TemplateResponse:
    """The admin index with the dashboard above the app list (AdminSite.index's context)."""
    context = {
        **admin.site.each_context(request),
        "title": "Fleet dashboard",
        "subtitle": None,
        "app_list": admin.site.get_app_list(request),
        **_fragments_context(request),
        "choices": dashboard.grid_choices(),
        "fingerprint": dashboard.dashboard_fingerprint(),
        "cursor": str(dashboard.feed_cursor_now()),
        "poll_ms": settings.DASHBOARD_POLL_SECONDS * 1000,
    }
    request.current_app = admin.site.name
    return TemplateResponse(request, "homepot/dashboard/index.html", context)


@require_GET
@never_cache
def dashboard_poll(request: HttpRequest) -> HttpResponse:
    """204 when nothing changed since `fp`; else the fragments and toasts as JSON."""
    fingerprint = dashboard.dashboard_fingerprint()
    if request.GET.get("fp") == fingerprint:
        return HttpResponse(status=204)
    try:
        cursor = dashboard.feed_cursor_parse(request.GET.get("cursor", ""))
    except ValueError:
        cursor = dashboard.feed_cursor_now()  # a new client: toasts from now on
    sections = Sections.for_user(request.user)
    toasts = dashboard.toasts_after(cursor=cursor, user=request.user, sections=sections)
    return JsonResponse(
        {
            "fingerprint": fingerprint,
            "cursor": str(toasts.cursor),
            "toasts": toasts.items,
            "html": _fragments_html(request, fingerprint=fingerprint, sections=sections),
        }
    )


def _fragments_html(request: HttpRequest, *, fingerprint: str, sections: Sections) -> dict:
    """The fragments, rendered once per fingerprint for everyone who sees the same
    thing (the same filters and sections): open dashboards all re-render at the same
    refresh tick, and 50 of them must cost one render, not 50. Nothing in them is
    per user beyond the sections (no form, no token)."""
    filters = GridFilters.parse(request.GET)
    key = f"dashboard:html:{fingerprint}:{sections.key}:{filters.query()}"
    html = cache.get(key)
    if html is None:
        context = _fragments_context(request)
        html = {
            name: render_to_string(template, context, request)
            for name, template in FRAGMENTS.items()
        }
        cache.set(key, html, timeout=2 * settings.DASHBOARD_REFRESH_SECONDS)
    return html


# Staff only, as every admin page: anonymous users go to the admin's login page.
dashboard_index_view = admin.site.admin_view(dashboard_index)
dashboard_poll_view = admin.site.admin_view(dashboard_poll)
