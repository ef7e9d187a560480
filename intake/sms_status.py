"""Twilio SMS status callbacks: the delivery report of each message we sent.

Twilio posts to /webhooks/twilio/sms-status/ (the StatusCallback of every
SMS) each time a message moves: queued, sent, delivered, undelivered or
failed with an ErrorCode. A callback whose signature checks is stored in the
inbox (WebhookEvent) before anything else, keyed `<MessageSid>:<status>`, so
a retried callback changes nothing; a task then applies it to the outbox row
that sent the message (notifications.delivery_reports).
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from notifications.delivery_reports import (
    DeliveryReport,
    ReportOutcome,
    notification_delivery_report,
)

from .inbox import (
    webhook_event_attempt_begin,
    webhook_event_insert,
    webhook_events_stuck_ids,
)
from .models import WebhookEvent
from .twilio_signature import twilio_request_valid

logger = logging.getLogger(__name__)

PROVIDER_TWILIO = "twilio"
KIND_SMS_STATUS = "sms_status"
# A report can beat the worker that writes down the message SID (Twilio
# answers the send, then reports within a second); an unmatched report is
# tried again for this long before it is set aside.
UNMATCHED_PATIENCE = timedelta(minutes=2)
EVENT_STUCK_AFTER = timedelta(minutes=1)
MAX_EVENT_ATTEMPTS = 10


class SmsStatusInvalid(ValueError):
    """A signed callback that is not an SMS status report."""


class DeliveryReportUnmatched(Exception):
    """No outbox row has this message id yet; the task tries again shortly."""


@dataclass(frozen=True)
class SmsStatusEvent:
    message_sid: str
    status: str
    error_code: str


def sms_status_event_parse(*, payload: dict) -> SmsStatusEvent:
    """Read a status callback; raise SmsStatusInvalid if it names no message."""
    sid = _value(payload, "MessageSid") or _value(payload, "SmsSid")
    status = (_value(payload, "MessageStatus") or _value(payload, "SmsStatus")).lower()
    if not sid:
        raise SmsStatusInvalid("no MessageSid")
    if not status:
        raise SmsStatusInvalid("no MessageStatus")
    if len(sid) > 64 or len(status) > 20:
        raise SmsStatusInvalid("MessageSid or MessageStatus too long")
    return SmsStatusEvent(
        message_sid=sid, status=status, error_code=_value(payload, "ErrorCode")[:16]
    )


def sms_status_event_store(*, payload: dict) -> tuple[WebhookEvent | None, bool]:
    """Keep one verified status callback in the inbox; queue it on commit.

    Returns (event, created); a callback already stored returns the existing
    row and queues nothing. Raises SmsStatusInvalid for a payload that names
    no message or no status.
    """
    parsed = sms_status_event_parse(payload=payload)
    event_id = f"{parsed.message_sid}:{parsed.status}"
    event = webhook_event_insert(
        provider=PROVIDER_TWILIO,
        kind=KIND_SMS_STATUS,
        event_id=event_id,
        payload=payload,
    )
    if event is None:
        logger.info("sms status: duplicate callback event=%s ignored", event_id)
        existing = WebhookEvent.objects.filter(
            provider=PROVIDER_TWILIO, event_id=event_id
        ).first()
        return existing, False

    from .tasks import sms_status_process

    # robust: the report is safe in the inbox; the sweep queues it if the
    # broker is down now.
    transaction.on_commit(lambda: sms_status_process.delay(event.pk), robust=True)
    logger.info("sms status: callback stored event=%s id=%s", event_id, event.pk)
    return event, True


def sms_status_event_record(
    *, webhook_event_id: int, now: datetime | None = None
) -> str | None:
    """Apply one stored status callback; safe to run any number of times.

    Locks the inbox row and then the outbox row (select_for_update). Returns
    the ReportOutcome, or None when there was nothing to do. Raises
    DeliveryReportUnmatched, with the event left pending, while a report
    for an unknown message is still young.
    """
    now = now or timezone.now()
    if not webhook_event_attempt_begin(
        webhook_event_id=webhook_event_id, max_attempts=MAX_EVENT_ATTEMPTS
    ):
        return None
    with transaction.atomic():
        event = (
            WebhookEvent.objects.select_for_update().filter(pk=webhook_event_id).first()
        )
        if event is None or event.status != WebhookEvent.Status.PENDING:
            return None
        try:
            parsed = sms_status_event_parse(payload=event.payload)
        except SmsStatusInvalid as exc:
            _event_close(event, WebhookEvent.Status.FAILED, error=str(exc), now=now)
            return None

        outcome = notification_delivery_report(
            report=DeliveryReport(
                message_sid=parsed.message_sid,
                status=parsed.status,
                error_code=parsed.error_code,
            ),
            now=now,
        )
        if outcome == ReportOutcome.UNMATCHED:
            if event.received_at > now - UNMATCHED_PATIENCE:
                young = True
            else:
                young = False
                _event_close(
                    event,
                    WebhookEvent.Status.IGNORED,
                    error="no notification has this MessageSid",
                    now=now,
                )
                logger.warning(
                    "sms status: event=%s id=%s matches no notification, set aside",
                    event.event_id,
                    event.pk,
                )
        else:
            young = False
            status = (
                WebhookEvent.Status.IGNORED
                if outcome == ReportOutcome.IGNORED
                else WebhookEvent.Status.PROCESSED
            )
            _event_close(event, status, now=now)
            logger.info(
                "sms status: event=%s id=%s %s", event.event_id, event.pk, outcome
            )
    if young:
        raise DeliveryReportUnmatched(parsed.message_sid)
    return outcome


def sms_status_events_stuck_ids(
    *, now: datetime | None = None, limit: int = 500
) -> list[int]:
    """Status callbacks still pending a while after they were stored."""
    return webhook_events_stuck_ids(
        provider=PROVIDER_TWILIO,
        kind=KIND_SMS_STATUS,
        older_than=EVENT_STUCK_AFTER,
        now=now,
        limit=limit,
    )


@csrf_exempt
@require_POST
def twilio_sms_status(request: HttpRequest) -> HttpResponse:
    """Twilio SMS status callback: 403 unless signed, else stored and 200.

    A duplicate still gets 200, so Twilio stops retrying what we hold.
    """
    if not twilio_request_valid(request):
        return HttpResponse("invalid signature", status=403, content_type="text/plain")
    payload = {
        key: values[0] if len(values) == 1 else values
        for key, values in request.POST.lists()
    }
    try:
        sms_status_event_store(payload=payload)
    except SmsStatusInvalid as exc:
        logger.warning("sms status callback refused: %s", exc)
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    return HttpResponse(status=200)


def _event_close(
    event: WebhookEvent, status: str, *, now: datetime, error: str = ""
) -> None:
    event.status = status
    event.processed_at = now
    event.last_error = error
    event.save(update_fields=["status", "processed_at", "last_error"])


def _value(payload: dict, key: str) -> str:
    """One parameter as text; the first of a repeated one."""
    value = payload.get(key)
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value or "").strip()
