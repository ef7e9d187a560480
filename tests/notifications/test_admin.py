"""The outbox in admin: delivery state, error code and the fallback link."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from notifications.models import Notification

State = Notification.State
CHANGELIST = reverse("admin:notifications_notification_changelist")


def sms_with_fallback(n: int) -> tuple[Notification, Notification]:
    sms = Notification.objects.create(
        channel="sms",
        reason="call_summary",
        recipient="+16175550177",
        body="call",
        dedupe_key=f"test:sms:{n}",
        state=State.UNDELIVERABLE,
        delivery_status="undelivered",
        last_error_code="30006",
    )
    email = Notification.objects.create(
        channel="email",
        reason="call_summary",
        recipient="dana@harbor.example",
        body="call",
        dedupe_key=f"fallback:{sms.pk}",
        fallback_of=sms,
    )
    return sms, email


@pytest.mark.django_db
def test_the_list_shows_delivery_state_error_code_and_the_fallback_both_ways(
    admin_client,
):
    sms, email = sms_with_fallback(1)

    page = admin_client.get(CHANGELIST).content.decode()

    assert "undelivered" in page
    assert "30006" in page
    email_url = reverse("admin:notifications_notification_change", args=[email.pk])
    sms_url = reverse("admin:notifications_notification_change", args=[sms.pk])
    assert f'<a href="{email_url}">email #{email.pk} (pending)</a>' in page
    assert f'<a href="{sms_url}">for SMS #{sms.pk} (undeliverable)</a>' in page


@pytest.mark.django_db
def test_the_list_does_not_query_per_row(admin_client):
    sms_with_fallback(1)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(CHANGELIST)
    for n in range(2, 12):
        sms_with_fallback(n)
    with CaptureQueriesContext(connection) as many:
        admin_client.get(CHANGELIST)

    assert len(many.captured_queries) == len(few.captured_queries)


@pytest.mark.django_db
def test_the_change_page_shows_the_fallback(admin_client):
    sms, email = sms_with_fallback(1)

    page = admin_client.get(
        reverse("admin:notifications_notification_change", args=[sms.pk])
    ).content.decode()

    assert f"email #{email.pk}" in page
