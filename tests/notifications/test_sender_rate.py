"""Messages from one sender number stay within its send rate.

The rate is counted where our workers start the sends (a Redis window they
all share) and measured here where the messages arrive: at the Twilio
stand-in.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from notifications import delivery
from notifications.delivery import notification_deliver
from notifications.models import Notification
from notifications.services import notification_enqueue
from standins.twilio import TwilioStandIn

State = Notification.State


class TimedTwilioStandIn(TwilioStandIn):
    """The stand-in, noting when each message request arrived and from whom."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.arrivals: list[tuple[float, str]] = []
        self._arrivals_lock = threading.Lock()

    def handle(self, method, path, auth, form):
        if method == "POST":
            with self._arrivals_lock:
                self.arrivals.append((time.monotonic(), form.get("From", "")))
        return super().handle(method, path, auth, form)

    def most_in_window(self, sender: str, *, window: float = 1.0) -> int:
        """The most messages from `sender` that arrived within any `window` s."""
        times = sorted(at for at, who in self.arrivals if who == sender)
        best, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best


@pytest.fixture
def twilio():
    with (
        TimedTwilioStandIn() as standin,
        override_settings(TWILIO_API_BASE_URL=standin.url),
    ):
        yield standin


def test_a_burst_through_two_worker_threads_keeps_each_sender_within_its_rate(
    twilio, celery_worker
):
    """12 SMS from two numbers at once, rate 3/s: never more than 3 from one
    number in any second at Twilio, and every SMS sent once."""
    senders = ["+15005550031", "+15005550032"]
    with override_settings(TWILIO_SENDER_RATE_PER_SECOND=3):
        with transaction.atomic():
            for n in range(12):
                notification_enqueue(
                    channel="sms",
                    reason="call_summary",
                    recipient=f"+1617555{n:04d}",
                    sender=senders[n % 2],
                    body=f"call {n}",
                    dedupe_key=f"test:burst:{n}",
                )
        deadline = time.monotonic() + 60
        while Notification.objects.exclude(state=State.SENT).exists():
            assert time.monotonic() < deadline, "the worker did not finish in time"
            time.sleep(0.1)

    assert sorted(m["body"] for m in twilio.messages) == sorted(
        f"call {n}" for n in range(12)
    )
    for sender in senders:
        assert len([1 for _, who in twilio.arrivals if who == sender]) == 6
        assert twilio.most_in_window(sender) <= 3
    print(
        "sender rate: most per second at Twilio",
        {s: twilio.most_in_window(s) for s in senders},
    )


@pytest.mark.django_db
def test_a_row_that_cannot_get_a_slot_soon_is_rescheduled_not_slept_on(
    twilio, monkeypatch
):
    sender = "+15005550041"
    queued = []
    monkeypatch.setattr(delivery, "SENDER_SLOT_MAX_WAIT_SECONDS", 0.0)
    monkeypatch.setattr(
        "notifications.tasks.notification_send.apply_async",
        lambda args, countdown: queued.append((args, countdown)),
    )
    first, second = (
        Notification.objects.create(
            channel="sms",
            reason="call_summary",
            recipient=f"+1617555018{n}",
            sender=sender,
            body=f"call {n}",
            dedupe_key=f"test:slot:{n}",
        )
        for n in range(2)
    )

    notification_deliver(notification_id=first.pk)
    started = time.monotonic()
    before = timezone.now()
    notification_deliver(notification_id=second.pk)
    took = time.monotonic() - started

    second.refresh_from_db()
    assert len(twilio.messages) == 1
    assert second.state == State.PENDING
    assert second.attempts == 0
    window = delivery.SENDER_RATE_WINDOW_SECONDS
    spread = delivery.SENDER_RETRY_SPREAD_SECONDS
    assert before < second.next_attempt_at
    assert second.next_attempt_at <= timezone.now() + timedelta(seconds=window + spread)
    [(args, countdown)] = queued
    assert args == (second.pk,)
    assert 0 < countdown <= window + spread
    assert took < window, "the worker gave the row back instead of waiting"

    # Not before its time, even if a task turns up early...
    notification_deliver(notification_id=second.pk)
    assert len(twilio.messages) == 1
    # ...and sent once it is due.
    time.sleep(window)
    Notification.objects.filter(pk=second.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    notification_deliver(notification_id=second.pk)
    second.refresh_from_db()
    assert second.state == State.SENT
    assert second.attempts == 1
    assert len(twilio.messages) == 2


@pytest.mark.django_db
def test_a_failed_row_waiting_for_a_slot_stays_failed_with_its_attempts(
    twilio, monkeypatch
):
    sender = "+15005550042"
    monkeypatch.setattr(delivery, "SENDER_SLOT_MAX_WAIT_SECONDS", 0.0)
    monkeypatch.setattr(
        "notifications.tasks.notification_send.apply_async",
        lambda args, countdown: None,
    )
    delivery.sender_rate_limiter().try_acquire(sender)
    retry = Notification.objects.create(
        channel="sms",
        reason="call_summary",
        recipient="+16175550190",
        sender=sender,
        body="call",
        dedupe_key="test:slot:failed",
        state=State.FAILED,
        attempts=2,
        last_error_code="20500",
    )

    notification_deliver(notification_id=retry.pk)

    retry.refresh_from_db()
    assert (retry.state, retry.attempts) == (State.FAILED, 2)
    assert retry.next_attempt_at > timezone.now()
    assert [r.method for r in twilio.requests] == ["GET"]  # the look-up only
