"""Intake's routes: the inbound email webhook of the configured ESP."""

from django.urls import path

from .inbound_webhooks import inbound_email_webhook


def inbound_email_urlpatterns() -> list:
    """`anymail/<esp>/inbound/`; only settings.ANYMAIL_ESP answers (else 404).

    Read per request, not at import, so tests and deployments switch ESP
    with the setting alone.
    """
    return [
        path(
            "anymail/<slug:esp>/inbound/",
            inbound_email_webhook,
            name="inbound_email_webhook",
        )
    ]


urlpatterns = inbound_email_urlpatterns()
