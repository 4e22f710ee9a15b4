from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import ops_views

urlpatterns = [
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", include("config.api_urls")),
    # The trader's dashboard (pages only: its data and actions are the API's), and the root URL leads to it.
    path("dashboard/", include("dashboard.urls")),
    path("", RedirectView.as_view(url="/dashboard/", permanent=False), name="root"),
    # Browsers ask every page's host for /favicon.ico (the admin's pages name none): not a 404.
    path("favicon.ico", RedirectView.as_view(url=static("dashboard/favicon.svg"), permanent=True)),
]

# Under /api/ Django's own error pages (a URL no route matches, a malformed request) are JSON too.
handler400 = "execution.api.errors.api_bad_request"
handler404 = "execution.api.errors.api_not_found"
handler500 = "execution.api.errors.api_server_error"
