"""Delivery reports moving notifications: error codes decide what comes next.

Shared case "Faults seen in the field" 4: permanent codes are not retried
and fall back to email once; an opt-out applies to that sender number only;
30003 is retried a bounded number of times; 30007 alerts operations.
Reports are stored and processed the way the webhook and its task do.
"""

import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from intake.models import WebhookEvent
from intake.sms_status import (
    UNMATCHED_PATIENCE,
    DeliveryReportUnmatched,
    sms_status_event_record,
    sms_status_event_store,
)
from notifications.delivery import CLOCK_MARGIN, notification_deliver, outbox_due_ids
from notifications.delivery_reports import (
    UNREACHABLE_BACKOFF_SECONDS,
    unreachable_retry_delay,
)
from notifications.models import Notification, Suppression
from standins.twilio import TwilioStandIn
from tests.factories import CallFactory, OnCallContactFactory
from tests.notifications.twilio_reports import status_params

State = Notification.State
OUR_NUMBER = "+15005550006"
ON_CALL = "+16175550177"
ON_CALL_EMAIL = "dana@harborplumbing.example"


@pytest.fixture
def contact(db):
    return OnCallContactFactory(phone=ON_CALL, email=ON_CALL_EMAIL)


@pytest.fixture
def twilio():
    with TwilioStandIn() as standin, override_settings(TWILIO_API_BASE_URL=standin.url):
        yield standin


_sids = iter(range(1_000_000))


def sent_sms(contact, **fields) -> Notification:
    """A call summary SMS Twilio has taken and not reported on yet."""
    call = CallFactory(business=contact.business)
    return Notification.objects.create(
        channel="sms",
        reason="call_summary",
        recipient=contact.phone,
        sender=OUR_NUMBER,
        body="Harbor Plumbing & Heating: call from +16175550199, 47s.",
        dedupe_key=f"test:{next(_sids)}",
        call=call,
        state=State.SENT,
        attempts=1,
        provider_message_id=f"SM{next(_sids):032x}",
        sent_at=timezone.now(),
        **fields,
    )


def report(notification: Notification, status: str, code: str = "", **kwargs):
    """Store one status callback as the webhook does and process it."""
    params = status_params(
        sid=notification.provider_message_id, status=status, code=code
    )
    event, _ = sms_status_event_store(payload=params)
    outcome = sms_status_event_record(webhook_event_id=event.pk, **kwargs)
    notification.refresh_from_db()
    return outcome


def fallbacks() -> list[Notification]:
    return list(Notification.objects.filter(fallback_of__isnull=False))


# --- Delivered, and order ---------------------------------------------------


@pytest.mark.django_db
def test_delivered_moves_a_sent_sms_to_delivered(contact):
    notification = sent_sms(contact)

    assert report(notification, "delivered") == "delivered"

    assert notification.state == State.DELIVERED
    assert notification.delivery_status == "delivered"
    assert notification.delivered_at is not None
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED


@pytest.mark.django_db
def test_delivered_before_sent_does_not_move_the_row_backwards(contact):
    notification = sent_sms(contact)

    report(notification, "delivered")
    report(notification, "sent")
    report(notification, "queued")

    assert notification.state == State.DELIVERED
    assert notification.delivery_status == "delivered"
    statuses = dict(WebhookEvent.objects.values_list("event_id", "status"))
    sid = notification.provider_message_id
    assert statuses[f"{sid}:sent"] == WebhookEvent.Status.IGNORED


@pytest.mark.django_db
def test_a_late_failure_after_delivered_changes_nothing(contact):
    notification = sent_sms(contact)

    report(notification, "delivered")
    report(notification, "undelivered", "30003")

    assert notification.state == State.DELIVERED
    assert notification.delivery_failures == 0
    assert fallbacks() == []


@pytest.mark.django_db
def test_sent_then_delivered_in_order_records_each_step(contact):
    notification = sent_sms(contact)

    report(notification, "sent")
    assert (notification.state, notification.delivery_status) == (State.SENT, "sent")
    report(notification, "delivered")
    assert notification.state == State.DELIVERED


# --- Permanent codes ----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["21211", "21614", "21408", "21612", "30006"])
def test_a_permanent_code_is_not_retried_and_falls_back_once(contact, code):
    notification = sent_sms(contact)

    assert report(notification, "undelivered", code) == "undeliverable"

    assert notification.state == State.UNDELIVERABLE
    assert notification.last_error_code == code
    assert notification.next_attempt_at is None
    later = timezone.now() + timedelta(days=1)
    assert notification.pk not in outbox_due_ids(now=later)
    [fallback] = fallbacks()
    assert fallback.fallback_of == notification
    assert (fallback.channel, fallback.recipient) == ("email", ON_CALL_EMAIL)
    assert fallback.dedupe_key == f"fallback:{notification.pk}"
    assert not Suppression.objects.exists()

    # The same report again (another status name) owes nothing more.
    report(notification, "failed", code)
    assert len(fallbacks()) == 1


@pytest.mark.django_db
def test_an_opt_out_report_suppresses_that_sender_only(contact, twilio):
    notification = sent_sms(contact)

    report(notification, "undelivered", "21610")

    assert notification.state == State.UNDELIVERABLE
    suppression = Suppression.objects.get()
    assert (suppression.channel, suppression.address, suppression.sender) == (
        "sms",
        ON_CALL,
        OUR_NUMBER,
    )
    assert len(fallbacks()) == 1

    # Another message from the same number is not sent; from another, it is.
    again = Notification.objects.create(
        channel="sms",
        reason="p0_page",
        recipient=ON_CALL,
        body="P0 page",
        dedupe_key="test:again",
        sender=OUR_NUMBER,
    )
    other = Notification.objects.create(
        channel="sms",
        reason="p0_page",
        recipient=ON_CALL,
        body="P0 page",
        dedupe_key="test:other",
        sender="+15005550009",
    )
    notification_deliver(notification_id=again.pk)
    notification_deliver(notification_id=other.pk)
    again.refresh_from_db()
    other.refresh_from_db()
    assert again.state == State.SUPPRESSED
    assert other.state == State.SENT
    assert [m["from"] for m in twilio.messages] == ["+15005550009"]


# --- Unreachable: bounded re-sends -------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["30003", "30005"])
def test_unreachable_is_retried_later_with_backoff(contact, code):
    notification = sent_sms(contact)
    before = timezone.now()

    assert report(notification, "undelivered", code) == "retry"

    assert notification.state == State.FAILED
    assert notification.delivery_failures == 1
    assert notification.last_error_code == code
    assert notification.next_attempt_at >= before + timedelta(
        seconds=UNREACHABLE_BACKOFF_SECONDS * 0.75
    )
    assert outbox_due_ids() == []
    assert outbox_due_ids(now=notification.next_attempt_at) == [notification.pk]
    # Not written off yet: the fallback waits for the give-up or the deadline.
    assert fallbacks() == []


@pytest.mark.django_db
def test_unreachable_gives_up_after_the_last_resend_and_falls_back(contact, settings):
    settings.SMS_UNREACHABLE_RETRIES = 3
    notification = sent_sms(contact)

    for failures in range(1, 4):
        assert report(notification, "undelivered", "30003") == "retry"
        assert notification.delivery_failures == failures
        # The re-send went out as a new message.
        Notification.objects.filter(pk=notification.pk).update(
            state=State.SENT, provider_message_id=f"SMresend{failures}"
        )
        notification.refresh_from_db()

    assert report(notification, "undelivered", "30003") == "undeliverable"
    assert notification.state == State.UNDELIVERABLE
    assert "gave up after 3 re-sends" in notification.last_error
    assert len(fallbacks()) == 1


def test_unreachable_backoff_grows_and_never_undercuts_the_lookup_margin():
    delays = [unreachable_retry_delay(failures=n) for n in range(1, 8)]

    assert all(delay > CLOCK_MARGIN for delay in delays)
    assert delays[2] > delays[0]
    assert max(delays) <= timedelta(minutes=30)


@pytest.mark.django_db
def test_a_resend_after_unreachable_is_a_new_message_not_the_old_one(contact, twilio):
    """The look-up before a re-send must not take the undelivered message
    (same body, same number) for a copy of the new one."""
    notification = Notification.objects.create(
        channel="sms",
        reason="call_summary",
        recipient=ON_CALL,
        body="Harbor Plumbing & Heating: call from +16175550199, 47s.",
        dedupe_key="test:resend",
        call=CallFactory(business=contact.business),
    )
    notification_deliver(notification_id=notification.pk)
    notification.refresh_from_db()
    first_sid = notification.provider_message_id

    report(notification, "undelivered", "30003")
    Notification.objects.filter(pk=notification.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    notification_deliver(notification_id=notification.pk)
    notification.refresh_from_db()

    assert notification.state == State.SENT
    assert len(twilio.messages) == 2
    assert notification.provider_message_id == twilio.messages[1]["sid"] != first_sid
    assert notification.delivery_status == ""
    assert [r.method for r in twilio.requests] == ["POST", "GET", "POST"]

    report(notification, "delivered")
    assert notification.state == State.DELIVERED


# --- Carrier filtering ----------------------------------------------------------


@pytest.mark.django_db
@override_settings(SUPPORT_ONCALL_EMAIL="ops@afterhours.example")
def test_carrier_filtering_alerts_operations_instead_of_retrying(contact, caplog):
    caplog.set_level(logging.WARNING)
    notification = sent_sms(contact)

    assert report(notification, "undelivered", "30007") == "undeliverable"

    assert notification.state == State.UNDELIVERABLE
    assert notification.next_attempt_at is None
    alerts = Notification.objects.filter(reason="ops_alert").order_by("channel")
    assert [(a.channel, a.recipient) for a in alerts] == [
        ("email", "ops@afterhours.example"),
        ("sms", "+16175550100"),
    ]
    assert "30007" in alerts[0].subject
    assert "filtered" in alerts[0].body
    [fallback] = fallbacks()
    assert fallback.recipient == ON_CALL_EMAIL
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("filtered by the carrier" in line for line in warnings)
    assert not any(ON_CALL in line for line in warnings)

    # A burst of filtered messages makes one alert an hour, not one each.
    report(sent_sms(contact), "undelivered", "30007")
    assert Notification.objects.filter(reason="ops_alert").count() == 2
    assert len(fallbacks()) == 2


# --- Reports that match nothing (yet) -------------------------------------------


@pytest.mark.django_db
def test_a_report_that_beats_the_sid_is_kept_pending_for_a_retry(contact):
    params = status_params(sid="SMnotrecordedyet", status="delivered")
    event, _ = sms_status_event_store(payload=params)

    with pytest.raises(DeliveryReportUnmatched):
        sms_status_event_record(webhook_event_id=event.pk)
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PENDING

    notification = sent_sms(contact)
    Notification.objects.filter(pk=notification.pk).update(
        provider_message_id="SMnotrecordedyet"
    )
    assert sms_status_event_record(webhook_event_id=event.pk) == "delivered"
    notification.refresh_from_db()
    assert notification.state == State.DELIVERED


@pytest.mark.django_db
def test_a_report_for_an_unknown_message_is_set_aside_after_a_while():
    params = status_params(sid="SMfromanothersystem", status="delivered")
    event, _ = sms_status_event_store(payload=params)
    later = timezone.now() + UNMATCHED_PATIENCE + timedelta(seconds=1)

    assert sms_status_event_record(webhook_event_id=event.pk, now=later) == "unmatched"

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.IGNORED
    assert "no notification" in event.last_error


@pytest.mark.django_db
def test_a_processed_report_is_not_applied_twice(contact):
    notification = sent_sms(contact)
    params = status_params(
        sid=notification.provider_message_id, status="undelivered", code="30003"
    )
    event, _ = sms_status_event_store(payload=params)

    sms_status_event_record(webhook_event_id=event.pk)
    sms_status_event_record(webhook_event_id=event.pk)

    notification.refresh_from_db()
    assert notification.delivery_failures == 1
    assert mail.outbox == []
