"""Shared cases, "Faults seen in the field" 4 and 7, through the whole pipeline.

A signed voice callback goes in; a real Celery worker on Redis records the
call and sends the on-call SMS with the real Twilio client to the stand-in;
Twilio's status callbacks come back signed to /webhooks/twilio/sms-status/.
"""

import time
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client, override_settings
from django.utils import timezone

from accounts.models import OnCallContact
from intake.models import Call
from notifications.models import Notification, Suppression
from notifications.tasks import outbox_sweep, sms_fallback_sweep
from standins.twilio import TwilioStandIn
from tests.intake.test_voice_webhook import post_case
from tests.notifications.twilio_reports import post_status, status_params

State = Notification.State
OUR_NUMBER = "+15005550006"
DANA = "+16175550177"
DANA_EMAIL = "dana@harborplumbing.example"


@pytest.fixture
def twilio():
    with TwilioStandIn() as standin, override_settings(TWILIO_API_BASE_URL=standin.url):
        yield standin


def summary_sms() -> Notification:
    return Notification.objects.get(channel="sms", reason="call_summary")


def state_of(notification: Notification) -> str:
    return Notification.objects.values_list("state", flat=True).get(pk=notification.pk)


def wait_for(condition, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not finish in time")
        time.sleep(0.1)


def call_completes() -> Notification:
    """The shared voice case: the call completes, its SMS is owed and sent."""
    assert post_case(Client(), "completed").status_code == 200
    wait_for(
        lambda: Notification.objects.filter(
            reason="call_summary", channel="sms"
        ).exists()
    )
    notification = summary_sms()
    wait_for(lambda: state_of(notification) not in (State.PENDING, State.SENDING))
    notification.refresh_from_db()
    return notification


def report(notification: Notification, status: str, code: str = "") -> None:
    params = status_params(
        sid=notification.provider_message_id,
        status=status,
        code=code,
        to=notification.recipient,
    )
    assert post_status(Client(), params).status_code == 200


def test_an_opted_out_on_call_gets_the_summary_by_email_once(
    businesses, twilio, celery_worker
):
    """21610 from the Messages API: no retry, undeliverable, one email."""
    twilio.reject(DANA, 21610, from_number=OUR_NUMBER)

    notification = call_completes()

    assert notification.state == State.UNDELIVERABLE
    assert notification.last_error_code == "21610"
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.sender) == (DANA, OUR_NUMBER)
    fallback = notification.fallback
    wait_for(lambda: state_of(fallback) == State.SENT)
    [email] = mail.outbox
    assert email.to == [DANA_EMAIL]
    assert email.subject.startswith("Call summary: Harbor Plumbing & Heating")
    assert "+16175550199" in email.body

    # Nothing retries it or owes it again, however long the sweeps run.
    assert outbox_sweep() == 0
    with override_settings(SMS_DELIVERY_CONFIRM_SECONDS=0):
        assert sms_fallback_sweep() == 0
    time.sleep(0.5)
    assert [r.method for r in twilio.requests] == ["POST"]
    assert len(mail.outbox) == 1


def test_an_unreachable_handset_is_sent_again_and_then_delivered(
    businesses, twilio, celery_worker
):
    """A 30003 delivery report: re-sent after a backoff, delivered, no email."""
    notification = call_completes()
    assert notification.state == State.SENT
    first_sid = notification.provider_message_id

    report(notification, "sent")
    report(notification, "undelivered", "30003")
    wait_for(lambda: state_of(notification) == State.FAILED)
    notification.refresh_from_db()
    assert notification.delivery_failures == 1
    assert notification.next_attempt_at > timezone.now() + timedelta(seconds=60)
    assert outbox_sweep() == 0  # not before its time

    Notification.objects.filter(pk=notification.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    assert outbox_sweep() == 1
    wait_for(lambda: state_of(notification) == State.SENT)
    notification.refresh_from_db()
    assert notification.provider_message_id != first_sid
    assert len(twilio.messages_to(DANA)) == 2

    report(notification, "delivered")
    wait_for(lambda: state_of(notification) == State.DELIVERED)
    assert mail.outbox == []
    assert not Notification.objects.filter(fallback_of=notification).exists()


@override_settings(SUPPORT_ONCALL_EMAIL="oncall@afterhours.example")
def test_carrier_filtering_alerts_operations_and_falls_back(
    businesses, twilio, celery_worker
):
    """A 30007 delivery report: no blind retry, operations told, email owed."""
    notification = call_completes()

    report(notification, "undelivered", "30007")

    wait_for(lambda: len(mail.outbox) == 2)
    assert sorted(m.to[0] for m in mail.outbox) == [
        DANA_EMAIL,
        "oncall@afterhours.example",
    ]
    alert = next(m for m in mail.outbox if m.to == ["oncall@afterhours.example"])
    assert "30007" in alert.subject
    wait_for(lambda: len(twilio.messages) == 2)
    assert twilio.messages_to("+16175550100")[0]["body"].startswith(
        "A carrier filtered our SMS"
    )
    notification.refresh_from_db()
    assert notification.state == State.UNDELIVERABLE
    assert notification.next_attempt_at is None
    assert len(twilio.messages_to(DANA)) == 1


def test_an_on_call_phone_written_with_an_extension_gets_the_sms_at_e164(
    businesses, twilio, celery_worker
):
    """Fault 7: "(617) 555-0177 x22" typed in admin; the SMS goes to the
    E.164 number and the fallback still finds the person."""
    OnCallContact.objects.filter(phone=DANA).update(phone="(617) 555-0177 x22")

    notification = call_completes()

    assert notification.recipient == DANA
    assert notification.state == State.SENT
    [message] = twilio.messages
    assert message["to"] == DANA
    assert Call.objects.get().business.name == "Harbor Plumbing & Heating"

    report(notification, "undelivered", "21211")
    wait_for(lambda: len(mail.outbox) == 1)
    assert mail.outbox[0].to == [DANA_EMAIL]
