from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every process that loads the apps gets the Celery app configured from Django's
        # settings, so that `@shared_task`s sent from web workers go to its broker.
        from gateway import celery  # noqa: F401
