import django_stubs_ext
from django.apps import AppConfig

# Generic Django classes subscripted at runtime (`admin.ModelAdmin[ApiKey]`) need this before any
# models or admin module is imported; app configs are all imported before those, so here is
# early enough. Not in settings: reading the settings (the supervisor, the server's parent) would
# then import most of Django, about 20 MB kept for their lifetime.
django_stubs_ext.monkeypatch()


class GatewayConfig(AppConfig):
    name = "gateway"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every process that loads the apps gets the Celery app configured from Django's
        # settings, so that `@shared_task`s sent from web workers go to its broker.
        from gateway import celery  # noqa: F401
