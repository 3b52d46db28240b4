from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from homepot import api_docs, dashboard_views, health, metrics

# HOMEPOT on every admin page, its <title> and the first page's heading.
admin.site.site_header = admin.site.site_title = admin.site.index_title = "HOMEPOT"

urlpatterns = [
    path("health", health.liveness, name="health"),
    path("health/ready", health.readiness, name="health-ready"),
    # Prometheus; 404 unless METRICS_BEARER_TOKEN is set (homepot/metrics.py).
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its init script as a file: no inline script (CSP).
    path("api/docs", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    # Redoc with nothing from another host (homepot/api_docs.py says what that takes).
    path("api/redoc", api_docs.RedocView.as_view(url_name="schema"), name="redoc"),
    path("api/redoc/redoc.standalone.js", api_docs.redoc_bundle, name="redoc-bundle"),
    path("api/v1/", include("analytics.urls")),
    path("api/v1/", include("commands.urls")),
    path("api/v1/", include("devices.urls")),
    # The fleet dashboard is the admin's first page; its poll sits before the
    # admin's own URLs, whose catch-all would take it.
    path("admin/", dashboard_views.dashboard_index_view, name="dashboard"),
    path("admin/dashboard/poll", dashboard_views.dashboard_poll_view, name="dashboard-poll"),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
]
