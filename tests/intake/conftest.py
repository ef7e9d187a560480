"""Fixtures of the intake tests: posting to the ESP inbound webhook."""

import base64

import pytest
from django.conf import settings
from django.test import override_settings


@pytest.fixture
def post(client, monkeypatch, django_capture_on_commit_callbacks):
    """POST to an ESP's inbound URL; tasks queued on commit run inline.

    Our processing task runs in this thread; the outbox send task is left
    unsent (the outbox rows are what this part owes).
    """
    from intake.tasks import inbound_email_process_task
    from notifications.tasks import notification_send

    monkeypatch.setattr(
        inbound_email_process_task, "delay", lambda pk: inbound_email_process_task(pk)
    )
    monkeypatch.setattr(notification_send, "delay", lambda pk: None)

    def do_post(esp, auth=settings.ANYMAIL["WEBHOOK_SECRET"], **kwargs):
        if auth:
            token = base64.b64encode(auth.encode()).decode()
            kwargs["HTTP_AUTHORIZATION"] = f"Basic {token}"
        with override_settings(ANYMAIL_ESP=esp):
            with django_capture_on_commit_callbacks(execute=True):
                return client.post(f"/anymail/{esp}/inbound/", **kwargs)

    return do_post
