"""The email fallback of an SMS: once, to the right person, readable alone."""

import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from notifications.delivery import notification_deliver
from notifications.fallback import (
    fallback_addresses,
    sms_fallback_due_ids,
    sms_fallback_sweep,
)
from notifications.models import Notification, Suppression
from notifications.tasks import sms_fallback_sweep as sms_fallback_sweep_task
from standins.twilio import TwilioStandIn
from tests.factories import BusinessFactory, CallFactory, OnCallContactFactory

State = Notification.State
ON_CALL = "+16175550177"


@pytest.fixture
def twilio():
    with TwilioStandIn() as standin, override_settings(TWILIO_API_BASE_URL=standin.url):
        yield standin


@pytest.fixture
def business(db):
    return BusinessFactory(name="Harbor Plumbing & Heating")


_keys = iter(range(1_000_000))


def summary_sms(business, recipient: str = ON_CALL, **fields) -> Notification:
    call = CallFactory(
        business=business,
        caller_number="+16175550199",
        duration_seconds=47,
        started_at=timezone.now() - timedelta(minutes=10),
    )
    return Notification.objects.create(
        channel="sms",
        reason="call_summary",
        recipient=recipient,
        body="Harbor Plumbing & Heating: call from +16175550199. Summary to follow.",
        dedupe_key=f"test:{next(_keys)}",
        call=call,
        **fields,
    )


def age(notification: Notification, seconds: float) -> None:
    Notification.objects.filter(pk=notification.pk).update(
        created_at=timezone.now() - timedelta(seconds=seconds)
    )


def deliver(notification: Notification) -> Notification:
    notification_deliver(notification_id=notification.pk)
    notification.refresh_from_db()
    return notification


def fallback_of(notification: Notification) -> Notification | None:
    return Notification.objects.filter(fallback_of=notification).first()


# --- When -----------------------------------------------------------------


@pytest.mark.django_db
def test_an_sms_refused_by_twilio_goes_by_email_once(business, twilio):
    OnCallContactFactory(business=business, phone=ON_CALL, email="dana@harbor.example")
    twilio.reject(ON_CALL, 21211)
    notification = deliver(summary_sms(business))

    assert notification.state == State.UNDELIVERABLE
    fallback = fallback_of(notification)
    assert (fallback.channel, fallback.recipient) == ("email", "dana@harbor.example")
    assert fallback.reason == "call_summary"
    assert fallback.call == notification.call

    deliver(fallback)
    assert [m.to for m in mail.outbox] == [["dana@harbor.example"]]
    assert mail.outbox[0].extra_headers["Auto-Submitted"] == "auto-generated"

    # Nothing owes a second one: sweeps, repeated sends, a late report.
    deliver(notification)
    assert sms_fallback_sweep(now=timezone.now() + timedelta(hours=1)) == 0
    assert Notification.objects.filter(channel="email").count() == 1


@pytest.mark.django_db
def test_an_sms_suppressed_by_an_opt_out_goes_by_email(business, twilio):
    OnCallContactFactory(business=business, phone=ON_CALL, email="dana@harbor.example")
    Suppression.objects.create(
        channel="sms", address=ON_CALL, sender="+15005550006", reason="STOP"
    )

    notification = deliver(summary_sms(business))

    assert notification.state == State.SUPPRESSED
    assert fallback_of(notification).recipient == "dana@harbor.example"
    assert not twilio.requests


@pytest.mark.django_db
def test_an_sms_not_confirmed_in_time_goes_by_email_through_the_sweep(
    business, settings
):
    settings.SMS_DELIVERY_CONFIRM_SECONDS = 300
    OnCallContactFactory(business=business, phone=ON_CALL, email="dana@harbor.example")
    unconfirmed = summary_sms(business, state=State.SENT, provider_message_id="SM1")
    failing = summary_sms(business, state=State.FAILED, attempts=2)
    delivered = summary_sms(business, state=State.DELIVERED, provider_message_id="SM2")
    young = summary_sms(business, state=State.SENT, provider_message_id="SM3")
    held = summary_sms(business, next_attempt_at=timezone.now() + timedelta(minutes=1))
    for old in (unconfirmed, failing, delivered, held):
        age(old, 301)
    age(young, 299)

    assert sorted(sms_fallback_due_ids()) == sorted([unconfirmed.pk, failing.pk])
    assert sms_fallback_sweep_task() == 2

    for notification in (unconfirmed, failing):
        fallback = fallback_of(notification)
        assert fallback.recipient == "dana@harbor.example"
        assert "not confirmed delivered within 5 minutes" in fallback.body
    for notification in (delivered, young, held):
        assert fallback_of(notification) is None
    assert sms_fallback_sweep() == 0
    assert Notification.objects.filter(channel="email").count() == 2


@pytest.mark.django_db
@override_settings(PUBLIC_BASE_URL="")
def test_without_a_status_callback_url_sent_sms_are_not_taken_as_lost(business):
    """Twilio cannot confirm anything it cannot report to."""
    OnCallContactFactory(business=business, phone=ON_CALL, email="dana@harbor.example")
    sent = summary_sms(business, state=State.SENT, provider_message_id="SM1")
    failing = summary_sms(business, state=State.FAILED, attempts=2)
    age(sent, 3600)
    age(failing, 3600)

    assert sms_fallback_due_ids() == [failing.pk]


# --- Who ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_next_on_call_contact_gets_it_when_the_first_has_no_email(business):
    OnCallContactFactory(business=business, phone=ON_CALL, email="", order=0)
    OnCallContactFactory(
        business=business, phone="+16175550178", email="second@harbor.example", order=1
    )
    OnCallContactFactory(email="someone@other-business.example")

    notification = summary_sms(business)

    assert fallback_addresses(notification=notification) == ["second@harbor.example"]


@pytest.mark.django_db
def test_a_bounced_address_is_skipped_for_the_next_contact(business, twilio):
    OnCallContactFactory(
        business=business, phone=ON_CALL, email="dana@harbor.example", order=0
    )
    OnCallContactFactory(
        business=business, phone="+16175550178", email="second@harbor.example", order=1
    )
    Suppression.objects.create(
        channel="email", address="Dana@Harbor.example", sender="", reason="bounce"
    )
    twilio.reject(ON_CALL, 21614)

    notification = deliver(summary_sms(business))

    assert fallback_of(notification).recipient == "second@harbor.example"


@pytest.mark.django_db
def test_the_contact_the_sms_went_to_comes_first(business):
    OnCallContactFactory(
        business=business, phone="+16175550170", email="first@harbor.example", order=0
    )
    OnCallContactFactory(
        business=business, phone=ON_CALL, email="dana@harbor.example", order=1
    )

    addresses = fallback_addresses(notification=summary_sms(business))

    assert addresses == ["dana@harbor.example", "first@harbor.example"]


@pytest.mark.django_db
@override_settings(SUPPORT_ONCALL_EMAIL="oncall@afterhours.example")
def test_the_support_on_call_phone_falls_back_to_the_support_on_call_email():
    page = Notification.objects.create(
        channel="sms",
        reason="p0_page",
        recipient="+16175550100",
        body="P0 AH-1042: calls not reaching on-call",
        dedupe_key="test:page",
    )

    assert fallback_addresses(notification=page) == ["oncall@afterhours.example"]


@pytest.mark.django_db
def test_with_nobody_to_write_to_the_miss_is_logged_once(business, caplog):
    caplog.set_level(logging.ERROR)
    OnCallContactFactory(business=business, phone=ON_CALL, email="")
    notification = summary_sms(business, state=State.FAILED, attempts=3)
    age(notification, 3600)

    assert sms_fallback_sweep() == 0
    assert sms_fallback_sweep() == 0

    notification.refresh_from_db()
    assert notification.fallback_checked_at is not None
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "no email to fall back to" in errors[0]
    assert ON_CALL not in errors[0]


# --- What -----------------------------------------------------------------


@pytest.mark.django_db
def test_the_fallback_email_reads_alone_and_carries_a_summary_that_came_later(
    business, twilio
):
    OnCallContactFactory(business=business, phone=ON_CALL, email="dana@harbor.example")
    twilio.reject(ON_CALL, 21610)
    notification = summary_sms(business)
    notification.call.summary = "Basement flooding, water shut off, call back."
    notification.call.save()

    fallback = fallback_of(deliver(notification))

    assert fallback.subject == (
        "Call summary: Harbor Plumbing & Heating, call from +16175550199"
    )
    assert fallback.body.startswith("Harbor Plumbing & Heating: call from +16175550199")
    assert "Basement flooding, water shut off, call back." in fallback.body
    assert "text message to the phone ending in 0177" in fallback.body
    assert "Summary to follow" not in fallback.body


@pytest.mark.django_db
def test_a_fallback_not_about_a_call_keeps_the_message_and_says_why():
    Notification.objects.create(
        channel="sms",
        reason="p0_page",
        recipient="+16175550100",
        body="P0 AH-1042: calls not reaching on-call",
        dedupe_key="test:page",
        state=State.FAILED,
        attempts=3,
    )
    age(Notification.objects.get(), 3600)

    with override_settings(SUPPORT_ONCALL_EMAIL="oncall@afterhours.example"):
        assert sms_fallback_sweep() == 1

    fallback = Notification.objects.get(channel="email")
    assert fallback.subject == "P0 page (by email: the text did not arrive)"
    assert fallback.body.startswith("P0 AH-1042: calls not reaching on-call")
