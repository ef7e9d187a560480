"""The outbox sender: SMS through the real Twilio client against the stand-in,
email through locmem; each owed message sent once, retried when it may help,
written off when it cannot.
"""

import logging
import smtplib
import threading
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from notifications.delivery import (
    CLAIM_LEASE,
    MAX_ATTEMPTS,
    PENDING_STUCK_AFTER,
    notification_deliver,
    outbox_due_ids,
    retry_delay,
)
from notifications.models import Notification, Suppression
from notifications.providers.twilio_sms import sms_send
from notifications.services import notification_enqueue
from notifications.tasks import outbox_sweep
from standins.twilio import TwilioStandIn

State = Notification.State
OUR_NUMBER = "+15005550006"
ON_CALL = "+16175550177"


@pytest.fixture
def twilio():
    with TwilioStandIn() as standin, override_settings(TWILIO_API_BASE_URL=standin.url):
        yield standin


_keys = iter(range(1_000_000))


def sms(recipient: str = ON_CALL, **fields) -> Notification:
    return Notification.objects.create(
        channel="sms",
        reason="call_summary",
        recipient=recipient,
        body="Harbor Plumbing & Heating: call from +16175550199, 47s.",
        dedupe_key=f"test:sms:{next(_keys)}",
        **fields,
    )


def email(recipient: str = "dana@harborplumbing.example", **fields) -> Notification:
    return Notification.objects.create(
        channel="email",
        reason="ticket_reply",
        recipient=recipient,
        subject="[AH-1042] Calls not reaching on-call",
        body="We are looking into it.",
        dedupe_key=f"test:email:{next(_keys)}",
        **fields,
    )


def deliver(notification: Notification) -> Notification:
    notification_deliver(notification_id=notification.pk)
    notification.refresh_from_db()
    return notification


def make_due(notification: Notification) -> None:
    """Let the retry time pass."""
    Notification.objects.filter(pk=notification.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


# --- SMS ------------------------------------------------------------------


@pytest.mark.django_db
def test_an_sms_is_sent_once_through_twilio(twilio):
    notification = deliver(sms())

    assert notification.state == State.SENT
    assert notification.attempts == 1
    assert notification.sent_at is not None
    assert notification.next_attempt_at is None
    assert notification.sender == OUR_NUMBER
    [message] = twilio.messages
    assert notification.provider_message_id == message["sid"]
    assert (message["to"], message["from"]) == (ON_CALL, OUR_NUMBER)
    assert message["body"] == notification.body
    assert message["status_callback"] == (
        "https://afterhours.example.test/webhooks/twilio/sms-status/"
    )

    deliver(notification)
    assert len(twilio.requests) == 1


@pytest.mark.django_db
def test_the_row_sender_is_the_number_the_sms_comes_from(twilio):
    deliver(sms(sender="+15005550009"))

    assert twilio.messages[0]["from"] == "+15005550009"


@pytest.mark.django_db
@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_transient_failure_is_recorded_with_a_later_retry(twilio, status):
    twilio.fail_next(1, status=status)
    before = timezone.now()

    notification = deliver(sms())

    assert notification.state == State.FAILED
    assert notification.attempts == 1
    assert notification.last_error_code == str(20000 + status)
    assert str(status) in notification.last_error
    assert notification.next_attempt_at > before
    assert not twilio.messages


@pytest.mark.django_db
def test_a_failed_row_is_not_tried_again_before_its_time(twilio):
    twilio.fail_next(1, status=500)
    notification = deliver(sms())

    deliver(notification)

    assert len(twilio.requests) == 1
    assert outbox_due_ids() == []


@pytest.mark.django_db
def test_a_timeout_is_transient(twilio, monkeypatch):
    monkeypatch.setattr(
        "notifications.providers.twilio_sms.REQUEST_TIMEOUT_SECONDS", 0.2
    )
    from notifications.providers.twilio_sms import _client

    _client.cache_clear()
    twilio.slow_next(1, seconds=1.0)
    try:
        notification = deliver(sms())
    finally:
        _client.cache_clear()

    assert notification.state == State.FAILED
    assert notification.last_error_code == "timeout"


@pytest.mark.django_db
def test_after_a_timeout_the_retry_finds_the_message_twilio_took(twilio, monkeypatch):
    """No answer in time, but Twilio had it: the retry does not send twice."""
    monkeypatch.setattr(
        "notifications.providers.twilio_sms.REQUEST_TIMEOUT_SECONDS", 0.2
    )
    from notifications.providers.twilio_sms import _client

    _client.cache_clear()
    twilio.slow_next(1, seconds=1.0, after_accept=True)
    try:
        notification = deliver(sms())
        assert notification.state == State.FAILED
        assert notification.last_error_code == "timeout"

        make_due(notification)
        notification = deliver(notification)
    finally:
        _client.cache_clear()

    assert notification.state == State.SENT
    assert len(twilio.messages) == 1
    assert notification.provider_message_id == twilio.messages[0]["sid"]
    assert [r.method for r in twilio.requests] == ["POST", "GET"]


@pytest.mark.django_db
@override_settings(TWILIO_AUTH_TOKEN="not_our_token_00000000000000000")
def test_rejected_credentials_stay_retryable_for_an_operator_to_fix(twilio):
    """Twilio's 401 is our configuration, not the message: not written off."""
    notification = deliver(sms())

    assert twilio.requests[0].status == 401
    assert notification.state == State.FAILED
    assert notification.last_error_code == "20003"


@pytest.mark.django_db
def test_nothing_listening_is_transient():
    """The test settings point Twilio at a closed loopback port."""
    notification = deliver(sms())

    assert notification.state == State.FAILED
    assert notification.last_error_code == "connection"


def test_a_500_then_success_is_retried_by_the_sweep_and_sent_once(
    twilio, celery_worker
):
    """Queued on commit, failed once, picked up again when due, sent once."""
    twilio.fail_next(1, status=500)
    with transaction.atomic():
        notification, _ = notification_enqueue(
            channel="sms",
            reason="call_summary",
            recipient=ON_CALL,
            body="call from +16175550199",
            dedupe_key="test:retry",
        )
    wait_for(lambda: state_of(notification) == State.FAILED)
    assert outbox_sweep() == 0

    make_due(notification)
    assert outbox_sweep() == 1
    wait_for(lambda: state_of(notification) == State.SENT)

    notification.refresh_from_db()
    assert notification.attempts == 2
    # The retry first asks Twilio whether the failed attempt got through.
    assert [(r.method, r.status) for r in twilio.requests] == [
        ("POST", 500),
        ("GET", 200),
        ("POST", 201),
    ]
    assert len(twilio.messages_to(ON_CALL)) == 1
    assert notification.provider_message_id == twilio.messages[0]["sid"]


@pytest.mark.django_db
def test_transient_failures_are_given_up_after_the_last_attempt(twilio):
    notification = sms(state=State.FAILED, attempts=MAX_ATTEMPTS - 1)
    twilio.fail_next(2, status=503)  # the look-up for an earlier send, the send

    notification = deliver(notification)

    assert notification.state == State.UNDELIVERABLE
    assert notification.attempts == MAX_ATTEMPTS
    assert "gave up" in notification.last_error
    assert notification.next_attempt_at is None


@pytest.mark.django_db
@pytest.mark.parametrize("code", [21211, 21614])
def test_an_invalid_number_is_undeliverable_and_not_retried(twilio, code):
    twilio.reject(ON_CALL, code)

    notification = deliver(sms())

    assert notification.state == State.UNDELIVERABLE
    assert notification.last_error_code == str(code)
    assert notification.next_attempt_at is None
    assert outbox_due_ids(now=timezone.now() + timedelta(days=1)) == []
    deliver(notification)
    assert len(twilio.requests) == 1
    assert not Suppression.objects.exists()


@pytest.mark.django_db
def test_an_opt_out_is_undeliverable_and_suppresses_that_sender_only(twilio):
    twilio.reject(ON_CALL, 21610, from_number=OUR_NUMBER)

    notification = deliver(sms())

    assert notification.state == State.UNDELIVERABLE
    assert notification.last_error_code == "21610"
    suppression = Suppression.objects.get()
    assert (suppression.channel, suppression.address, suppression.sender) == (
        "sms",
        ON_CALL,
        OUR_NUMBER,
    )

    again = deliver(sms())
    assert again.state == State.SUPPRESSED
    assert again.attempts == 0
    assert len(twilio.requests) == 1

    other = deliver(sms(sender="+15005550009"))
    assert other.state == State.SENT
    assert twilio.messages_to(ON_CALL)[0]["from"] == "+15005550009"


@pytest.mark.django_db
def test_a_suppressed_sms_recipient_is_not_sent(twilio):
    Suppression.objects.create(
        channel="sms", address=ON_CALL, sender=OUR_NUMBER, reason="STOP"
    )

    notification = deliver(sms())

    assert notification.state == State.SUPPRESSED
    assert not twilio.requests


@pytest.mark.django_db
@override_settings(TWILIO_ACCOUNT_SID="", TWILIO_AUTH_TOKEN="")
def test_without_credentials_the_sms_is_logged_not_sent(twilio, caplog):
    caplog.set_level(logging.INFO)

    notification = deliver(sms())

    assert notification.state == State.LOGGED
    assert notification.sent_at is None
    assert not twilio.requests
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"id={notification.pk}" in logged
    assert ON_CALL not in logged
    assert "***0177" in logged
    assert "+1617" not in logged


@pytest.mark.django_db
def test_a_row_already_done_is_never_sent_again(twilio):
    done = [
        sms(state=state)
        for state in (
            State.SENT,
            State.DELIVERED,
            State.UNDELIVERABLE,
            State.SUPPRESSED,
            State.LOGGED,
        )
    ]

    for notification in done:
        deliver(notification)

    assert not twilio.requests
    assert outbox_due_ids(now=timezone.now() + timedelta(days=1)) == []


def test_a_row_claimed_twice_at_once_is_sent_once(twilio, transactional_db):
    """Two workers handed the same row: the row lock lets one send it."""
    notification = sms()
    twilio.set_latency(0.5)
    barrier = threading.Barrier(2)
    errors = []

    def worker():
        try:
            barrier.wait()
            notification_deliver(notification_id=notification.pk)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(twilio.messages) == 1
    notification.refresh_from_db()
    assert (notification.state, notification.attempts) == (State.SENT, 1)


# --- Email ----------------------------------------------------------------


@pytest.mark.django_db
def test_an_email_goes_out_with_its_threading_headers(settings):
    headers = {
        "Message-ID": "<reply-1@afterhours.example>",
        "In-Reply-To": "<customer-1@harborplumbing.example>",
        "References": "<customer-1@harborplumbing.example>",
        "Auto-Submitted": "auto-replied",
    }

    notification = deliver(email(headers=headers))

    assert notification.state == State.SENT
    assert notification.provider_message_id == "<reply-1@afterhours.example>"
    [sent] = mail.outbox
    assert sent.to == ["dana@harborplumbing.example"]
    assert sent.from_email == settings.DEFAULT_FROM_EMAIL
    assert sent.subject == "[AH-1042] Calls not reaching on-call"
    message = sent.message()
    for name, value in headers.items():
        assert message[name] == value

    deliver(notification)
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_an_email_without_message_id_gets_one_we_keep():
    notification = deliver(email())

    [sent] = mail.outbox
    assert notification.provider_message_id
    assert sent.message()["Message-ID"] == notification.provider_message_id


@pytest.mark.django_db
def test_a_bounced_address_is_suppressed_not_mailed():
    Suppression.objects.create(
        channel="email",
        address="Dana@HarborPlumbing.example",
        sender="",
        reason="bounce",
    )

    notification = deliver(email())

    assert notification.state == State.SUPPRESSED
    assert mail.outbox == []


class DisconnectingBackend(BaseEmailBackend):
    def send_messages(self, messages):
        raise smtplib.SMTPServerDisconnected("connection dropped")


class RefusingBackend(BaseEmailBackend):
    def send_messages(self, messages):
        raise smtplib.SMTPRecipientsRefused({"x@example.test": (550, b"no")})


@pytest.mark.django_db
@override_settings(EMAIL_BACKEND=f"{__name__}.DisconnectingBackend")
def test_an_smtp_disconnect_is_retried_later():
    notification = deliver(email())

    assert notification.state == State.FAILED
    assert notification.next_attempt_at is not None


@pytest.mark.django_db
@override_settings(EMAIL_BACKEND=f"{__name__}.RefusingBackend")
def test_a_refused_recipient_is_undeliverable():
    notification = deliver(email())

    assert notification.state == State.UNDELIVERABLE
    assert notification.last_error_code == "rejected"


@pytest.mark.django_db
@override_settings(EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend")
def test_the_console_backend_marks_email_logged_not_sent(capsys):
    notification = deliver(email())

    assert notification.state == State.LOGGED


# --- The sweep ------------------------------------------------------------


@pytest.mark.django_db
def test_the_sweep_finds_due_retries_lost_claims_and_forgotten_rows():
    now = timezone.now()
    due = sms(state=State.FAILED, next_attempt_at=now - timedelta(seconds=1))
    sms(state=State.FAILED, next_attempt_at=now + timedelta(minutes=1))
    lost = sms(state=State.SENDING, next_attempt_at=now - timedelta(seconds=1))
    sms(state=State.SENDING, next_attempt_at=now + CLAIM_LEASE)
    forgotten = sms()
    Notification.objects.filter(pk=forgotten.pk).update(
        created_at=now - PENDING_STUCK_AFTER - timedelta(seconds=1)
    )
    sms()  # just queued: its own task will take it

    assert sorted(outbox_due_ids(now=now)) == sorted([due.pk, lost.pk, forgotten.pk])


@pytest.mark.django_db
def test_a_claim_whose_worker_died_is_sent_again_when_its_lease_ends(twilio):
    notification = sms(state=State.SENDING, attempts=1)
    Notification.objects.filter(pk=notification.pk).update(
        next_attempt_at=timezone.now() + CLAIM_LEASE
    )
    assert deliver(notification).state == State.SENDING
    assert not twilio.requests

    make_due(notification)
    notification = deliver(notification)

    assert notification.state == State.SENT
    assert notification.attempts == 2
    assert len(twilio.messages) == 1


@pytest.mark.django_db
def test_a_message_twilio_took_before_its_worker_died_is_not_sent_twice(twilio):
    """Killed after Twilio's 201, before the outcome was written."""
    notification = sms(state=State.SENDING, attempts=1)
    Notification.objects.filter(pk=notification.pk).update(
        next_attempt_at=timezone.now() + CLAIM_LEASE, sender=OUR_NUMBER
    )
    taken = sms_send(to=ON_CALL, body=notification.body, from_number=OUR_NUMBER)
    sms_send(to=ON_CALL, body="another call", from_number=OUR_NUMBER)

    make_due(notification)
    notification = deliver(notification)

    assert notification.state == State.SENT
    assert notification.provider_message_id == taken.message_id
    assert len(twilio.messages) == 2
    assert [r.method for r in twilio.requests] == ["POST", "POST", "GET"]


@pytest.mark.django_db
def test_a_lost_claim_is_sent_again_when_twilio_cannot_be_asked(twilio):
    notification = sms(state=State.SENDING, attempts=1)
    make_due(notification)
    twilio.fail_next(1, status=503)

    notification = deliver(notification)

    assert notification.state == State.SENT
    assert [r.status for r in twilio.requests] == [503, 201]


@pytest.mark.django_db
def test_a_lost_claim_on_the_last_attempt_is_written_off(twilio):
    notification = sms(state=State.SENDING, attempts=MAX_ATTEMPTS)
    make_due(notification)

    notification = deliver(notification)

    assert notification.state == State.UNDELIVERABLE
    assert notification.last_error_code == "lost"
    assert not twilio.requests


def test_retry_delays_grow_and_stay_capped():
    from notifications.delivery import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS

    for attempts in range(1, 12):
        step = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempts - 1))
        delay = retry_delay(attempts=attempts).total_seconds()
        assert step / 2 <= delay <= step


@pytest.mark.django_db
def test_a_missing_row_is_ignored():
    notification_deliver(notification_id=987654)


def state_of(notification: Notification) -> str:
    return Notification.objects.values_list("state", flat=True).get(pk=notification.pk)


def wait_for(condition, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not finish in time")
        time.sleep(0.1)
