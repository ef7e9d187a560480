"""End-of-call reports from the call provider: the summary reaches on-call.

The provider posts one JSON report per call to /webhooks/calls/summary/::

    {"call_id": "CA...", "caller": "+16175550199", "summary": "...",
     "urgency": "high", "started_at": "...", "ended_at": "...",
     "to": "+16175550142"}                      # to / business_line optional

signed over the raw body with a timestamp::

    X-Afterhours-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

where the HMAC key is CALL_SUMMARY_WEBHOOK_SECRET and the message is
"<t>.<raw body>". A report signed more than five minutes ago (or more than
five minutes ahead) is refused, so a captured request cannot be replayed
later; within that window the inbox (idempotent on call_id) makes a replay
harmless. With no secret configured every report is refused.

A task then fills the call's summary and urgency (creating the call if its
status callback has not arrived yet) and settles the on-call SMS so one SMS
carries the summary: see `intake.calls.call_summary_owe` for the wait.
"""

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import phonenumbers
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.models import PhoneLine
from afterhours.privacy import mask_phone
from notifications.models import Notification
from notifications.services import notification_enqueue

from .airtable import call_airtable_changed
from .calls import call_summary_owe, call_summary_text
from .inbox import webhook_event_attempt_begin, webhook_event_insert
from .models import Call, WebhookEvent

logger = logging.getLogger(__name__)

PROVIDER_CALLS = "call_provider"
KIND_CALL_SUMMARY = "call_summary"
SIGNATURE_HEADER = "HTTP_X_AFTERHOURS_SIGNATURE"
SIGNATURE_TOLERANCE_SECONDS = 5 * 60
SIGNATURE_VERSION = "v1"
EVENT_STUCK_AFTER = timedelta(minutes=2)
MAX_EVENT_ATTEMPTS = 5
MAX_CALL_ID_CHARS = 64


class CallSummaryInvalid(ValueError):
    """A signed report we cannot read; refused (400) or set aside."""


@dataclass(frozen=True)
class CallSummaryReport:
    """One end-of-call report, in our words."""

    call_id: str
    summary: str
    urgency: str
    caller: str
    caller_extension: str
    line: str
    started_at: datetime | None
    ended_at: datetime | None


# --- Signature -------------------------------------------------------------


def call_summary_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of "<timestamp>.<body>" (what the provider sends)."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def call_summary_request_valid(
    *, body: bytes, header: str, now: float | None = None
) -> bool:
    """True only for a report signed with our secret within five minutes.

    No secret configured refuses every report: an unconfigured webhook must
    not become an open one. Several v1 values are accepted (the provider
    signs with old and new secrets while one is rotated).
    """
    secret = settings.CALL_SUMMARY_WEBHOOK_SECRET
    if not secret:
        logger.error("call summary webhook: no CALL_SUMMARY_WEBHOOK_SECRET, refused")
        return False
    timestamp, signatures = _signature_parts(header)
    if timestamp is None or not signatures:
        logger.warning("call summary webhook: missing or unreadable signature")
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        logger.warning(
            "call summary webhook: signature timestamp %s is %.0fs from now, refused",
            timestamp,
            now - timestamp,
        )
        return False
    expected = call_summary_signature(secret=secret, timestamp=timestamp, body=body)
    # Every candidate is compared, in constant time each.
    valid = False
    for candidate in signatures:
        valid |= hmac.compare_digest(expected, candidate)
    if not valid:
        logger.warning("call summary webhook: bad signature")
    return valid


def _signature_parts(header: str) -> tuple[int | None, list[str]]:
    timestamp = None
    signatures = []
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == SIGNATURE_VERSION and value:
            signatures.append(value.strip().lower())
    return timestamp, signatures


# --- Inbox ------------------------------------------------------------------


def call_summary_parse(*, payload: dict) -> CallSummaryReport:
    """Read a report; raise CallSummaryInvalid when it names no call.

    A field we cannot read (a time without a zone, a caller that is not a
    phone number) is left out, not guessed; the report still counts.
    """
    if not isinstance(payload, dict):
        raise CallSummaryInvalid("the report is not a JSON object")
    call_id = _text(payload.get("call_id"))
    if not call_id:
        raise CallSummaryInvalid("no call_id")
    if len(call_id) > MAX_CALL_ID_CHARS:
        raise CallSummaryInvalid("call_id too long")
    if _has_nul(payload):
        # PostgreSQL cannot store it; refused here rather than by the insert.
        raise CallSummaryInvalid("NUL character in the report")
    caller, extension = _phone(_text(payload.get("caller")))
    line, _ = _phone(_text(payload.get("to")) or _text(payload.get("business_line")))
    return CallSummaryReport(
        call_id=call_id,
        summary=_text(payload.get("summary")),
        urgency=_text(payload.get("urgency")).lower()[:16],
        caller=caller,
        caller_extension=extension,
        line=line,
        started_at=_moment(payload.get("started_at")),
        ended_at=_moment(payload.get("ended_at")),
    )


def call_summary_store(*, payload: dict) -> tuple[WebhookEvent | None, bool]:
    """Keep one verified report in the inbox, once per call; queue it on commit.

    Returns (event, created). Raises CallSummaryInvalid when the report
    names no call.
    """
    report = call_summary_parse(payload=payload)
    event = webhook_event_insert(
        provider=PROVIDER_CALLS,
        kind=KIND_CALL_SUMMARY,
        event_id=report.call_id,
        payload=payload,
    )
    if event is None:
        logger.info("call summary: duplicate report call=%s ignored", report.call_id)
        existing = WebhookEvent.objects.filter(
            provider=PROVIDER_CALLS, event_id=report.call_id
        ).first()
        return existing, False

    from .tasks import call_summary_process

    transaction.on_commit(lambda: call_summary_process.delay(event.pk), robust=True)
    logger.info("call summary: report stored call=%s id=%s", report.call_id, event.pk)
    return event, True


# --- Processing ---------------------------------------------------------------


def call_summary_record(*, webhook_event_id: int) -> Call | None:
    """Fill the call's summary from one stored report; settle its SMS.

    Safe to run any number of times. Locks the inbox row, the call and the
    call's summary SMS (select_for_update). The Airtable record is pushed
    again on commit.
    """
    from .tasks import call_airtable_sync

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
        event.processed_at = timezone.now()
        try:
            report = call_summary_parse(payload=event.payload)
        except CallSummaryInvalid as exc:
            event.status = WebhookEvent.Status.FAILED
            event.last_error = str(exc)
            event.save(update_fields=["status", "last_error", "processed_at"])
            return None

        call, created = _call_for_report(report)
        _report_apply(call, report, created=created)
        event.status = WebhookEvent.Status.PROCESSED
        event.save(update_fields=["status", "processed_at"])
        call_summary_sms_settle(call=call)
        call_id = call.pk
        transaction.on_commit(lambda: call_airtable_sync.delay(call_id))
    logger.info(
        "call summary: call id=%s sid=%s summary recorded urgency=%s (%s)",
        call.pk,
        call.provider_call_id,
        call.urgency or "-",
        "new call" if created else "existing call",
    )
    return call


def call_summary_sms_settle(*, call: Call) -> Notification | None:
    """Make sure the on-call person gets the summary text, by one SMS if we can.

    Call inside the transaction that recorded the summary. If the call's
    SMS is not owed yet or has not left, it is owed or rewritten with the
    summary (`call_summary_owe` holds it until the call has ended, at most
    CALL_SUMMARY_WAIT_SECONDS). If it already went out saying "Summary to
    follow", a second SMS carries the summary. A call whose business is
    unknown yet waits for its status callback, which owes the SMS with the
    summary in it.
    """
    if call.business_id is None:
        logger.info(
            "call summary: call id=%s has no business yet; its SMS waits for the "
            "status callback that names the line",
            call.pk,
        )
        return None
    sent = (
        Notification.objects.select_for_update()
        .filter(
            call=call,
            channel=Notification.Channel.SMS,
            dedupe_key__startswith=f"call_summary:{call.pk}:sms:",
        )
        .order_by("pk")
        .first()
    )
    if sent is None or (sent.state == Notification.State.PENDING and not sent.attempts):
        return call_summary_owe(call=call)

    text = call_summary_text(call=call)
    if text == sent.body or call.summary.strip()[:60] in sent.body:
        return sent
    follow_up, created = notification_enqueue(
        channel=Notification.Channel.SMS,
        reason=Notification.Reason.CALL_SUMMARY,
        recipient=sent.recipient,
        sender=sent.sender,
        body=text,
        dedupe_key=f"call_summary:{call.pk}:followup:sms:{sent.recipient}",
        call=call,
    )
    if created:
        logger.info(
            "call summary: call id=%s SMS id=%s had left without the summary; "
            "follow-up SMS id=%s to %s",
            call.pk,
            sent.pk,
            follow_up.pk,
            mask_phone(sent.recipient),
        )
    return follow_up


def call_summary_events_stuck_ids(
    *, now: datetime | None = None, limit: int = 500
) -> list[int]:
    """Reports still pending long after they were stored."""
    now = now or timezone.now()
    return list(
        WebhookEvent.objects.filter(
            provider=PROVIDER_CALLS,
            kind=KIND_CALL_SUMMARY,
            status=WebhookEvent.Status.PENDING,
            received_at__lte=now - EVENT_STUCK_AFTER,
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )


def _call_for_report(report: CallSummaryReport) -> tuple[Call, bool]:
    calls = Call.objects.select_for_update()
    call = calls.filter(provider_call_id=report.call_id).first()
    if call is not None:
        return call, False
    line = _phone_line(report.line)
    # Heard of only from its report: the call stays "queued" (movable) so
    # the provider's status callbacks, when they come, set its real status.
    return calls.get_or_create(
        provider_call_id=report.call_id,
        defaults={
            "business": line.business if line else None,
            "dialled_number": report.line,
            "status": Call.Status.QUEUED,
            "caller_number": report.caller,
            "started_at": report.started_at,
            "ended_at": report.ended_at,
        },
    )


def _report_apply(call: Call, report: CallSummaryReport, *, created: bool) -> None:
    summary = report.summary
    if report.caller and (
        report.caller_extension
        or (call.caller_number and report.caller != call.caller_number)
    ):
        # A callback number the caller gave (with its extension kept apart
        # from the E.164 number) is what on-call needs to call back.
        extension = (
            f" ext. {report.caller_extension}" if report.caller_extension else ""
        )
        summary = f"{summary} Call back: {report.caller}{extension}.".strip()
    call.summary = summary
    call.urgency = report.urgency
    if call.business_id is None and report.line:
        line = _phone_line(report.line)
        if line is not None:
            call.business = line.business
            call.dialled_number = call.dialled_number or report.line
    if not call.caller_number:
        call.caller_number = report.caller
    if call.started_at is None:
        call.started_at = report.started_at
    if call.ended_at is None:
        call.ended_at = report.ended_at
    # The sync task queued on commit pushes the summary, or the Airtable
    # sweep should that message be lost.
    call_airtable_changed(call)
    call.save()


def _phone_line(number: str) -> PhoneLine | None:
    if not number:
        return None
    return PhoneLine.objects.filter(number=number).select_related("business").first()


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _text(value) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value).strip()


def _phone(text: str) -> tuple[str, str]:
    """(E.164, extension) of a number as people write it; ("", "") if none."""
    if not text:
        return "", ""
    try:
        number = phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException:
        return "", ""
    if not phonenumbers.is_valid_number(number):
        return "", ""
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, (number.extension or "")[:10]


def _moment(value) -> datetime | None:
    """An ISO 8601 time with its zone; None when absent, unreadable or naive."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC) if value > 0 else None
        except (OverflowError, OSError, ValueError):
            return None
    text = _text(value)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if timezone.is_naive(moment):
        return None
    return moment


# --- The webhook ----------------------------------------------------------------


@csrf_exempt
@require_POST
def call_summary_webhook(request: HttpRequest) -> HttpResponse:
    """The call provider's end-of-call report.

    403 unless signed with our secret within five minutes; 400 for a body
    that is not a report; 200 once stored, and 200 for a duplicate (the
    inbox decides what it changes).
    """
    body = request.body
    header = request.META.get(SIGNATURE_HEADER, "")
    if not call_summary_request_valid(body=body, header=header):
        return HttpResponse("invalid signature", status=403, content_type="text/plain")
    try:
        payload = json.loads(body)
        call_summary_store(payload=payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # json.JSONDecodeError and CallSummaryInvalid are ValueErrors; a
        # body nested thousands deep is a RecursionError.
        logger.warning("call summary report refused: %s", exc)
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    return HttpResponse(status=200)
