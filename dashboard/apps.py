from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The trader's dashboard: pages that only render templates; every figure and every action on
    them is a call to the REST API (/api/), under the browser's session login."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "dashboard"
