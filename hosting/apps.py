from django.apps import AppConfig


class HostingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "hosting"
    verbose_name = "Hosting"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .runners import load_runners
        from .services import revocation, token_auth

        load_runners()
        token_auth.connect_signals()
        revocation.connect()
