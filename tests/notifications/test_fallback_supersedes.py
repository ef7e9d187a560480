"""An SMS whose email fallback is owed is not sent any more, and an email
fallback whose SMS was confirmed delivered first is not sent either.

Issue 4: an SMS still pending, failing and retrying, or lost with its worker
past the delivery deadline had its email fallback owed by the sweep, and was
then claimed and sent all the same, so the on-call person got both.
"""

import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from intake.sms_status import sms_status_event_record, sms_status_event_store
from notifications.delivery import notification_deliver, outbox_due_ids
from notifications.fallback import sms_fallback_sweep
from notifications.models import Notification
from notifications.providers.twilio_sms import sms_send
from standins.twilio import TwilioStandIn
from tests.factories import CallFactory, OnCallContactFactory
from tests.notifications.twilio_reports import status_params

State = Notification.State
OUR_NUMBER = "+15005550006"
ON_CALL = "+16175550177"
ON_CALL_EMAIL = "dana@harbor.example"


@pytest.fixture
def twilio():
    with TwilioStandIn() as standin, override_settings(TWILIO_API_BASE_URL=standin.url):
        yield standin


@pytest.fixture
def contact(db, settings):
    settings.SMS_DELIVERY_CONFIRM_SECONDS = 300
    return OnCallContactFactory(phone=ON_CALL, email=ON_CALL_EMAIL)


_keys = iter(range(1_000_000))


def summary_sms(contact, **fields) -> Notification:
    """A call summary SMS owed six minutes ago: past its delivery deadline."""
    notification = Notification.objects.create(
        channel="sms",
        reason="call_summary",
        recipient=contact.phone,
        body="Harbor Plumbing & Heating: call from +16175550199, 47s.",
        dedupe_key=f"test:{next(_keys)}",
        call=CallFactory(business=contact.business),
        **fields,
    )
    Notification.objects.filter(pk=notification.pk).update(
        created_at=timezone.now() - timedelta(minutes=6)
    )
    notification.refresh_from_db()
    return notification


def owe_fallback(notification: Notification) -> Notification:
    """The deadline sweep owes the email; returns the email row."""
    assert sms_fallback_sweep() == 1
    return Notification.objects.get(fallback_of=notification)


def make_due(notification: Notification) -> None:
    Notification.objects.filter(pk=notification.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def deliver(notification: Notification) -> Notification:
    notification_deliver(notification_id=notification.pk)
    notification.refresh_from_db()
    return notification


def report(notification: Notification, status: str, code: str = "") -> str:
    params = status_params(
        sid=notification.provider_message_id, status=status, code=code
    )
    event, _ = sms_status_event_store(payload=params)
    outcome = sms_status_event_record(webhook_event_id=event.pk)
    notification.refresh_from_db()
    return outcome


def assert_superseded(notification: Notification, fallback: Notification) -> None:
    assert notification.state == State.UNDELIVERABLE
    assert notification.last_error_code == "superseded"
    assert f"email fallback #{fallback.pk}" in notification.last_error
    assert notification.next_attempt_at is None
    later = timezone.now() + timedelta(days=1)
    assert notification.pk not in outbox_due_ids(now=later)


# --- The SMS is not sent once its fallback is owed --------------------------


@pytest.mark.django_db
def test_a_pending_sms_whose_fallback_is_owed_is_not_sent(contact, twilio, caplog):
    """Its task was lost (broker down); the sweep owed the email first."""
    caplog.set_level(logging.INFO, logger="notifications")
    sms = summary_sms(contact)
    fallback = owe_fallback(sms)

    sms = deliver(sms)

    assert_superseded(sms, fallback)
    assert not twilio.requests
    assert sms.attempts == 0
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"id={sms.pk}" in line and f"id={fallback.pk}" in line for line in lines)
    assert not any(ON_CALL in line for line in lines)

    deliver(fallback)
    assert [m.to for m in mail.outbox] == [[ON_CALL_EMAIL]]


@pytest.mark.django_db
def test_a_held_sms_whose_hold_ended_past_the_deadline_is_not_sent(contact, twilio):
    sms = summary_sms(contact, next_attempt_at=timezone.now() + timedelta(minutes=1))
    assert sms_fallback_sweep() == 0  # still held: not owed yet
    make_due(sms)
    fallback = owe_fallback(sms)

    assert_superseded(deliver(sms), fallback)
    assert not twilio.requests


@pytest.mark.django_db
def test_a_failing_sms_is_not_retried_once_its_fallback_is_owed(contact, twilio):
    """Twilio answered 500 twice; no attempt reached it, the look-up says so."""
    sms = summary_sms(
        contact,
        state=State.FAILED,
        attempts=2,
        sender=OUR_NUMBER,
        last_error_code="20500",
        next_attempt_at=timezone.now() + timedelta(minutes=1),
    )
    fallback = owe_fallback(sms)
    make_due(sms)

    sms = deliver(sms)

    assert_superseded(sms, fallback)
    assert [r.method for r in twilio.requests] == ["GET"]
    assert not twilio.messages


@pytest.mark.django_db
def test_a_lost_claim_twilio_never_took_is_not_sent_once_its_fallback_is_owed(
    contact, twilio
):
    sms = summary_sms(contact, state=State.SENDING, attempts=1, sender=OUR_NUMBER)
    make_due(sms)
    fallback = owe_fallback(sms)

    sms = deliver(sms)

    assert_superseded(sms, fallback)
    assert [r.method for r in twilio.requests] == ["GET"]
    assert not twilio.messages


@pytest.mark.django_db
def test_a_lost_claim_is_not_sent_when_twilio_cannot_be_asked_and_email_is_owed(
    contact, twilio
):
    sms = summary_sms(contact, state=State.SENDING, attempts=1, sender=OUR_NUMBER)
    make_due(sms)
    fallback = owe_fallback(sms)
    twilio.fail_next(1, status=503)

    assert_superseded(deliver(sms), fallback)
    assert [r.method for r in twilio.requests] == ["GET"]
    assert not twilio.messages


@pytest.mark.django_db
def test_a_lost_claim_twilio_took_is_recorded_not_sent_again(contact, twilio):
    """The look-up still runs: the message Twilio has keeps its report."""
    sms = summary_sms(contact, state=State.SENDING, attempts=1, sender=OUR_NUMBER)
    taken = sms_send(to=ON_CALL, body=sms.body, from_number=OUR_NUMBER)
    make_due(sms)
    owe_fallback(sms)

    sms = deliver(sms)

    assert sms.state == State.SENT
    assert sms.provider_message_id == taken.message_id
    assert len(twilio.messages) == 1


@pytest.mark.django_db
def test_an_sms_with_nobody_to_fall_back_to_is_still_sent(contact, twilio):
    contact.email = ""
    contact.save()
    sms = summary_sms(contact)
    assert sms_fallback_sweep() == 0

    assert deliver(sms).state == State.SENT
    assert len(twilio.messages) == 1


# --- Delivery reports: no re-send once the email is owed ---------------------


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["30003", "30005"])
def test_unreachable_is_not_resent_once_the_fallback_is_owed(contact, twilio, code):
    sms = summary_sms(contact)
    Notification.objects.filter(pk=sms.pk).update(next_attempt_at=None)
    sms = deliver(sms)
    assert sms.state == State.SENT
    fallback = owe_fallback(sms)

    assert report(sms, "undelivered", code) == "undeliverable"

    assert sms.state == State.UNDELIVERABLE
    assert sms.last_error_code == code
    assert "email fallback" in sms.last_error
    assert sms.next_attempt_at is None
    assert Notification.objects.filter(fallback_of__isnull=False).get() == fallback
    later = timezone.now() + timedelta(days=1)
    assert sms.pk not in outbox_due_ids(now=later)
    assert len(twilio.messages) == 1


@pytest.mark.django_db
def test_a_resend_scheduled_before_the_fallback_was_owed_does_not_go(contact, twilio):
    sms = deliver(summary_sms(contact))
    assert report(sms, "undelivered", "30003") == "retry"
    fallback = owe_fallback(sms)
    make_due(sms)

    sms = deliver(sms)

    assert_superseded(sms, fallback)
    assert len(twilio.messages) == 1
    assert [r.method for r in twilio.requests] == ["POST", "GET"]


# --- The reverse: the SMS was confirmed first --------------------------------


@pytest.mark.django_db
def test_a_fallback_not_yet_sent_is_cancelled_when_the_sms_is_delivered(
    contact, twilio, caplog
):
    caplog.set_level(logging.INFO, logger="notifications")
    sms = deliver(summary_sms(contact))
    fallback = owe_fallback(sms)

    assert report(sms, "delivered") == "delivered"

    assert sms.state == State.DELIVERED
    fallback.refresh_from_db()
    assert fallback.state == State.CANCELLED
    assert f"SMS #{sms.pk} was delivered" in fallback.last_error
    assert fallback.pk not in outbox_due_ids(now=timezone.now() + timedelta(days=1))
    assert deliver(fallback).state == State.CANCELLED
    assert mail.outbox == []
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"id={fallback.pk}" in line and "cancelled" in line for line in lines)


@pytest.mark.django_db
def test_a_fallback_retrying_after_an_smtp_error_is_cancelled_on_delivery(
    contact, twilio
):
    sms = deliver(summary_sms(contact))
    fallback = owe_fallback(sms)
    Notification.objects.filter(pk=fallback.pk).update(
        state=State.FAILED, attempts=1, next_attempt_at=timezone.now()
    )

    report(sms, "delivered")

    fallback.refresh_from_db()
    assert fallback.state == State.CANCELLED
    assert deliver(fallback).state == State.CANCELLED
    assert mail.outbox == []


@pytest.mark.django_db
def test_a_fallback_claimed_after_the_sms_was_delivered_is_not_sent(contact):
    """A lost email claim handed out again after the SMS was confirmed."""
    sms = summary_sms(contact, state=State.SENT, provider_message_id="SM1")
    fallback = owe_fallback(sms)
    Notification.objects.filter(pk=fallback.pk).update(
        state=State.SENDING, attempts=1, next_attempt_at=timezone.now()
    )
    Notification.objects.filter(pk=sms.pk).update(state=State.DELIVERED)

    assert deliver(fallback).state == State.CANCELLED
    assert mail.outbox == []


@pytest.mark.django_db
def test_a_fallback_already_sent_stays_sent_when_the_sms_is_delivered(contact, twilio):
    sms = deliver(summary_sms(contact))
    fallback = deliver(owe_fallback(sms))
    assert fallback.state == State.SENT

    report(sms, "delivered")

    fallback.refresh_from_db()
    assert sms.state == State.DELIVERED
    assert fallback.state == State.SENT
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_admin_shows_a_cancelled_fallback(admin_client, contact):
    sms = summary_sms(contact, state=State.DELIVERED, provider_message_id="SM1")
    fallback = Notification.objects.create(
        channel="email",
        reason="call_summary",
        recipient=ON_CALL_EMAIL,
        body="call",
        dedupe_key=f"fallback:{sms.pk}",
        fallback_of=sms,
        state=State.CANCELLED,
    )

    page = admin_client.get(
        reverse("admin:notifications_notification_changelist")
    ).content.decode()

    assert f"email #{fallback.pk} (cancelled)" in page
    assert "cancelled (its SMS was delivered first)" in page
