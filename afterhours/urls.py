from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from afterhours.api import router as api_router
from incidents.views import health_page, healthz, status_page

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="portal-home", permanent=False)),
    # Before the admin's own URLs, which would take any admin/ path.
    path("admin/health/", health_page, name="admin-health"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("accounts/", include("accounts.urls")),
    path("portal/", include("tickets.portal_urls")),
    path("status/", status_page, name="status"),
    path("api/", include(api_router.urls)),
    path("webhooks/", include("intake.webhook_urls")),
    path("", include("intake.urls")),
]
