"""Webhook events in admin: why one failed, at a glance, without a query a row."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from intake.models import WebhookEvent

CHANGELIST = reverse("admin:intake_webhookevent_changelist")
LONG_ERROR = "IntegrityError: " + "duplicate key value violates constraint " * 10


def failed_event(n: int, *, kind: str = "voice_status") -> WebhookEvent:
    return WebhookEvent.objects.create(
        provider="twilio",
        kind=kind,
        event_id=f"CA{n:032d}:completed",
        payload={"CallSid": f"CA{n:032d}"},
        status=WebhookEvent.Status.FAILED,
        attempts=3,
        last_error=LONG_ERROR,
    )


@pytest.mark.django_db
def test_the_list_shows_the_start_of_the_last_error(admin_client):
    failed_event(1)

    page = admin_client.get(CHANGELIST).content.decode()

    assert "Last error" in page
    assert LONG_ERROR[:60] in page
    assert LONG_ERROR not in page


@pytest.mark.django_db
def test_the_list_filters_by_status_and_kind(admin_client):
    failed_event(1, kind="voice_status")
    failed_event(2, kind="sms_status")
    WebhookEvent.objects.create(
        provider="twilio",
        kind="voice_status",
        event_id="CA3:completed",
        payload={},
        status=WebhookEvent.Status.PROCESSED,
    )

    page = admin_client.get(
        CHANGELIST, {"status__exact": "failed", "kind": "sms_status"}
    ).content.decode()

    assert f"CA{2:032d}:completed" in page
    assert f"CA{1:032d}:completed" not in page
    assert "CA3:completed" not in page


@pytest.mark.django_db
def test_the_list_does_not_query_per_row(admin_client):
    failed_event(1)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(CHANGELIST)
    for n in range(2, 12):
        failed_event(n)
    with CaptureQueriesContext(connection) as many:
        admin_client.get(CHANGELIST)

    assert len(many.captured_queries) == len(few.captured_queries)
