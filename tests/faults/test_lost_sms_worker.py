"""An SMS whose worker was killed after Twilio took it, kept as fast tests.

Both faults were found by the 300-call run with 20 worker kills
(test_worker_killed_during_run.py): one on-call number had been sent more
than 20 other messages by the time the lost claim was retried, so the
look-up missed the message Twilio already had and sent it again; and the
claim's five-minute lease outlasted both the delivery report waiting for
the row (2 minutes) and the SMS delivery deadline (5 minutes), so the on-call
person got the SMS and its email fallback too.
"""

from datetime import timedelta

import pytest
import time_machine
from django.test import override_settings
from django.utils import timezone

from intake.sms_status import (
    UNMATCHED_PATIENCE,
    DeliveryReportUnmatched,
    sms_status_event_record,
    sms_status_event_store,
)
from notifications.delivery import _claim, notification_deliver, outbox_due_ids
from notifications.fallback import sms_fallback_due_ids
from notifications.models import Notification
from notifications.providers.twilio_sms import sms_send
from standins.twilio import TwilioStandIn
from tests.notifications.twilio_reports import status_params

State = Notification.State
OUR_NUMBER = "+15005550006"
ON_CALL = "+13125550156"
# How often beat runs the outbox sweep (settings.CELERY_BEAT_SCHEDULE).
OUTBOX_SWEEP_EVERY = timedelta(seconds=30)


@pytest.fixture
def twilio():
    with TwilioStandIn() as standin, override_settings(TWILIO_API_BASE_URL=standin.url):
        yield standin


def taken_by_twilio_then_worker_killed() -> tuple[Notification, str]:
    """Claimed and handed to Twilio; the worker dies before writing the SID."""
    notification = Notification.objects.create(
        channel="sms",
        reason="call_summary",
        recipient=ON_CALL,
        sender=OUR_NUMBER,
        body="Lakeshore HVAC: call from +16175550140, 1m 29s. No heat upstairs.",
        dedupe_key="call_summary:59:sms:+13125550156",
    )
    claim = _claim(notification_id=notification.pk)
    assert claim is not None
    taken = sms_send(to=ON_CALL, body=notification.body, from_number=OUR_NUMBER)
    notification.refresh_from_db()
    assert notification.state == State.SENDING
    return notification, taken.message_id


@pytest.mark.django_db
def test_a_lost_sms_is_found_at_twilio_behind_many_newer_messages(twilio):
    """The on-call number got 30 more texts before the claim was retried."""
    notification, sid = taken_by_twilio_then_worker_killed()
    for n in range(30):
        sms_send(to=ON_CALL, body=f"another call {n}", from_number=OUR_NUMBER)
    Notification.objects.filter(pk=notification.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )

    notification_deliver(notification_id=notification.pk)

    notification.refresh_from_db()
    assert notification.state == State.SENT
    assert notification.provider_message_id == sid
    assert len(twilio.messages_to(ON_CALL)) == 31
    assert [r.method for r in twilio.requests].count("POST") == 31


@pytest.mark.django_db
def test_a_report_that_beat_a_lost_worker_still_confirms_its_sms_once(twilio):
    """Twilio reports the message delivered before anyone wrote down its SID.

    The lost claim is retried (and finds the message at Twilio) while the
    report still waits for its row, so the SMS ends delivered, sent once,
    and nobody is owed its email fallback.
    """
    notification, sid = taken_by_twilio_then_worker_killed()
    event, _ = sms_status_event_store(
        payload=status_params(sid=sid, status="delivered", to=ON_CALL)
    )
    reported = timezone.now()
    with pytest.raises(DeliveryReportUnmatched):
        sms_status_event_record(webhook_event_id=event.pk, now=reported)

    # The first outbox sweep after the lease ends hands the row out again,
    # and that is before the report would be set aside as unmatched.
    retried = notification.next_attempt_at + OUTBOX_SWEEP_EVERY
    assert retried < reported + UNMATCHED_PATIENCE
    assert notification.pk in outbox_due_ids(now=retried)
    with time_machine.travel(retried, tick=False):
        notification_deliver(notification_id=notification.pk)
        outcome = sms_status_event_record(
            webhook_event_id=event.pk, now=retried + timedelta(seconds=5)
        )

    notification.refresh_from_db()
    assert outcome == "delivered"
    assert notification.state == State.DELIVERED
    assert notification.provider_message_id == sid
    assert len(twilio.messages) == 1
    deadline_passed = notification.created_at + timedelta(minutes=10)
    assert notification.pk not in sms_fallback_due_ids(now=deadline_passed)
