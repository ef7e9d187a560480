"""Twilio's delivery reports, applied to the outbox rows that sent them.

A report names a message (its SID) and a status. "delivered" ends the row's
story, and cancels its email fallback if one was owed and has not gone out
(notifications.fallback). "failed" or "undelivered" comes with an error
code, and the code decides what happens next:

- permanent (invalid number, opted out, landline and their kind): no retry;
  the row is undeliverable and its email fallback is owed; an opt-out
  suppresses that recipient for that sender number only;
- carrier filtering (30007): no blind retry; operations are alerted, the row
  is undeliverable and its email fallback is owed;
- unreachable (30003, 30005) or anything else: re-sent a bounded number of
  times (SMS_UNREACHABLE_RETRIES) with backoff, then undeliverable and the
  fallback. The fallback sweep still owes the email once the delivery
  deadline passes, retries or not; from then on the email replaces the SMS:
  a report finds no re-send but the write-off, and a re-send scheduled
  earlier is written off by its claim (notifications.delivery).

Reports arrive out of order and twice: a status never moves backwards
(delivered is not undone by a late "sent"), and a failure is acted on only
while the row is waiting for news of that message.
"""

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from afterhours.privacy import mask_phone

from .fallback import (
    fallback_cancel,
    notification_fallback_owe,
    sms_fallback_owed,
)
from .models import Notification, Suppression
from .providers.twilio_sms import OPTED_OUT, SmsFailureKind, sms_failure_kind
from .services import ops_alert_owe

logger = logging.getLogger(__name__)

State = Notification.State

# How far along its way each status Twilio reports puts a message.
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
}
DELIVERED = frozenset({"delivered", "read"})
NOT_DELIVERED = frozenset({"failed", "undelivered"})
# Re-sends after "unreachable": about 2, 4, 8 minutes. Never shorter than
# delivery.CLOCK_MARGIN, so the look-up before a re-send cannot take an
# earlier undelivered message for the new one.
UNREACHABLE_BACKOFF_SECONDS = 120
UNREACHABLE_BACKOFF_CAP_SECONDS = 30 * 60
# Twilio's meaning of the codes we act on, for the row and the alert.
ERROR_TEXT = {
    "21211": "invalid 'To' number",
    "21408": "sending to this region is not enabled",
    "21610": "recipient opted out (STOP) of this sender number",
    "21612": "no route to this number",
    "21614": "not a mobile number",
    "30003": "unreachable destination handset",
    "30004": "message blocked by the recipient",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "message filtered by the carrier",
}


class ReportOutcome:
    UNMATCHED = "unmatched"
    IGNORED = "ignored"
    RECORDED = "recorded"
    DELIVERED = "delivered"
    RETRY = "retry"
    UNDELIVERABLE = "undeliverable"


@dataclass(frozen=True)
class DeliveryReport:
    """One status callback for one message, in our words."""

    message_sid: str
    status: str
    error_code: str = ""


def unreachable_retry_delay(*, failures: int) -> timedelta:
    """Backoff before the `failures`-th re-send, jittered in its top quarter."""
    step = min(
        UNREACHABLE_BACKOFF_CAP_SECONDS,
        UNREACHABLE_BACKOFF_SECONDS * 2 ** max(failures - 1, 0),
    )
    return timedelta(seconds=random.uniform(step * 0.75, step))


def notification_delivery_report(
    *, report: DeliveryReport, now: datetime | None = None
) -> str:
    """Apply one delivery report to the row that sent that message.

    Takes a row lock (select_for_update); call inside a transaction. Returns
    a ReportOutcome: UNMATCHED when no row has this message id (yet: the
    report can beat the worker that records the SID).
    """
    now = now or timezone.now()
    notification = (
        Notification.objects.select_for_update()
        .filter(provider_message_id=report.message_sid, channel="sms")
        .first()
    )
    if notification is None:
        return ReportOutcome.UNMATCHED

    status = report.status.lower()
    moved = STATUS_RANK.get(status, -1) > STATUS_RANK.get(
        notification.delivery_status, -1
    )
    if moved:
        notification.delivery_status = status
        Notification.objects.filter(pk=notification.pk).update(delivery_status=status)

    if status in DELIVERED:
        return _delivered(notification, now=now)
    if status in NOT_DELIVERED:
        return _not_delivered(notification, report=report, now=now)
    return ReportOutcome.RECORDED if moved else ReportOutcome.IGNORED


def _delivered(notification: Notification, *, now: datetime) -> str:
    # A failure recorded for this same message was wrong or early; the
    # phone has it. A row being re-sent right now is left to that send.
    if notification.state not in (State.SENT, State.FAILED, State.UNDELIVERABLE):
        return ReportOutcome.IGNORED
    previous = notification.state
    _update(notification, state=State.DELIVERED, delivered_at=now, next_attempt_at=None)
    logger.info(
        "outbox: notification id=%s delivered provider_id=%s (was %s)",
        notification.pk,
        notification.provider_message_id,
        previous,
    )
    if notification.fallback_checked_at is not None:
        email = Notification.objects.filter(fallback_of=notification).first()
        if email is not None:
            fallback_cancel(email=email, sms=notification)
    return ReportOutcome.DELIVERED


def _not_delivered(
    notification: Notification, *, report: DeliveryReport, now: datetime
) -> str:
    if notification.state != State.SENT:
        # Already delivered, already written off, or already rescheduled by
        # an earlier report of this message ("failed" after "undelivered").
        return ReportOutcome.IGNORED
    code = report.error_code or "none"
    meaning = ERROR_TEXT.get(code, "no detail")
    error = f"Twilio reported {report.status} {code}: {meaning}"
    kind = sms_failure_kind(code)

    if kind == SmsFailureKind.PERMANENT:
        if code == OPTED_OUT:
            # STOP applies to the number it was sent to, not to all of ours.
            Suppression.objects.get_or_create(
                channel="sms",
                address=notification.recipient,
                sender=notification.sender,
                defaults={"reason": f"Twilio {OPTED_OUT}: recipient opted out"},
            )
        return _undeliverable(
            notification,
            code=code,
            error=error,
            why=f"could not be delivered ({meaning})",
        )

    if kind == SmsFailureKind.FILTERED:
        _carrier_filtering_alert(notification, code=code, now=now)
        return _undeliverable(
            notification,
            code=code,
            error=error,
            why="was blocked by the mobile carrier's filter",
        )

    failures = notification.delivery_failures + 1
    if failures > settings.SMS_UNREACHABLE_RETRIES:
        return _undeliverable(
            notification,
            code=code,
            error=f"{error}; gave up after {failures - 1} re-sends",
            why=f"could not be delivered ({meaning})",
            delivery_failures=failures,
        )
    fallback = sms_fallback_owed(notification=notification)
    if fallback is not None:
        # The person is getting it by email already; a re-send now would
        # reach them twice if the handset comes back.
        return _undeliverable(
            notification,
            code=code,
            error=f"{error}; not re-sent: its email fallback "
            f"#{fallback.pk} is already owed",
            why=f"could not be delivered ({meaning})",
            delivery_failures=failures,
        )
    retry_at = now + unreachable_retry_delay(failures=failures)
    _update(
        notification,
        state=State.FAILED,
        delivery_failures=failures,
        last_error=error,
        last_error_code=code,
        next_attempt_at=retry_at,
    )
    logger.warning(
        "outbox: notification id=%s not delivered code=%s, re-send %s of %s at %s",
        notification.pk,
        code,
        failures,
        settings.SMS_UNREACHABLE_RETRIES,
        retry_at.isoformat(),
    )
    return ReportOutcome.RETRY


def _undeliverable(
    notification: Notification, *, code: str, error: str, why: str, **fields
) -> str:
    _update(
        notification,
        state=State.UNDELIVERABLE,
        last_error=error,
        last_error_code=code,
        next_attempt_at=None,
        **fields,
    )
    logger.warning(
        "outbox: notification id=%s undeliverable code=%s to=%s (delivery report)",
        notification.pk,
        code,
        mask_phone(notification.recipient),
    )
    notification_fallback_owe(notification=notification, why=why)
    return ReportOutcome.UNDELIVERABLE


def _carrier_filtering_alert(
    notification: Notification, *, code: str, now: datetime
) -> None:
    sender = notification.sender
    logger.warning(
        "outbox: notification id=%s filtered by the carrier code=%s sender=%s; "
        "not retried, operations alerted",
        notification.pk,
        code,
        mask_phone(sender),
    )
    ops_alert_owe(
        topic=f"carrier-filtered:{sender}",
        subject=f"Carrier filtering ({code}) on SMS from {sender}",
        body=(
            f"A carrier filtered our SMS from {sender} (Twilio {code}); "
            f"first seen on notification #{notification.pk} "
            f"({notification.get_reason_display()}). Re-sending the same text "
            "from the same number will not help: check the wording and the "
            "number's registration (A2P 10DLC / toll-free verification). "
            "Affected messages go to their recipients by email meanwhile."
        ),
        now=now,
    )


def _update(notification: Notification, **fields) -> None:
    Notification.objects.filter(pk=notification.pk).update(**fields)
    for name, value in fields.items():
        setattr(notification, name, value)
