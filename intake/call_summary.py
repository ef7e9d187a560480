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
later; within that window the inbox (idempotent on call_id and content)
makes a replay harmless. With no secret configured every report is refused.

What a report may hold (anything else is refused before it is stored):

- plain JSON only, as `intake.jsonbody` reads it: no NaN or infinities, no
  lone surrogates or NUL in strings, nested at most 32 levels (400);
- call_id: a JSON string that is a call SID as the voice webhook reads it
  (`intake.calls.CALL_SID_RE`: 2-64 letters and digits) (400);
- caller, summary, urgency, to, business_line: JSON strings or null;
  started_at, ended_at: ISO 8601 strings, Unix seconds, or null (400);
- summary: at most MAX_SUMMARY_CHARS characters, the body at most
  MAX_REPORT_BYTES bytes (413).

A caller or time that is a string we cannot read is left out, not refused.

A second report for the same call that differs from every earlier one is a
correction: it is stored too (under the call id and a digest of its
content) and replaces the call's summary and urgency, and its Airtable
record is pushed again. On-call gets at most one SMS for all corrections
of a call (see `call_summary_sms_settle`). A replay of any earlier report,
however it is written, changes nothing.

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
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.models import PhoneLine
from afterhours.privacy import mask_phone
from notifications.models import Notification
from notifications.services import notification_enqueue, notification_rewrite

from .airtable import call_airtable_changed
from .calls import CALL_SID_RE, call_summary_owe, call_summary_text
from .inbox import (
    webhook_event_attempt_begin,
    webhook_event_insert,
    webhook_events_stuck_ids,
)
from .jsonbody import JsonBodyInvalid, json_body_parse, json_document_check
from .models import Call, WebhookEvent

logger = logging.getLogger(__name__)

PROVIDER_CALLS = "call_provider"
KIND_CALL_SUMMARY = "call_summary"
SIGNATURE_HEADER = "HTTP_X_AFTERHOURS_SIGNATURE"
SIGNATURE_TOLERANCE_SECONDS = 5 * 60
SIGNATURE_VERSION = "v1"
EVENT_STUCK_AFTER = timedelta(minutes=2)
MAX_EVENT_ATTEMPTS = 5
# A spoken call summarised: a few hundred characters; 20,000 is pages of it.
# The SMS carries 480 (intake.calls) and Airtable's cell 100,000.
MAX_SUMMARY_CHARS = 20_000
# Room for a summary at the limit written as \u escapes (12 bytes for one
# emoji) and the other fields; far below Django's 2.5 MB.
MAX_REPORT_BYTES = 256 * 1024
# Between a call id and the digest of a correction's content in the inbox's
# event id: no call SID holds it, so no call's ids run into another's.
CORRECTION_SEPARATOR = "~"
TEXT_FIELDS = ("caller", "summary", "urgency", "to", "business_line")
TIME_FIELDS = ("started_at", "ended_at")


class CallSummaryInvalid(ValueError):
    """A signed report we cannot read; refused (400) or set aside."""


class CallSummaryTooLarge(CallSummaryInvalid):
    """A report over the size limits; refused (413)."""


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
    """Read a report; raise CallSummaryInvalid when we cannot take it.

    Refused: a report that names no call a call SID can match, a field of
    the wrong JSON type, a summary over MAX_SUMMARY_CHARS, or content no
    database can store. A string we cannot read (a time without a zone, a
    caller that is not a phone number) is left out, not guessed; the report
    still counts.
    """
    if not isinstance(payload, dict):
        raise CallSummaryInvalid("the report is not a JSON object")
    try:
        json_document_check(payload)
    except JsonBodyInvalid as exc:
        raise CallSummaryInvalid(str(exc)) from None
    call_id = _call_id(payload.get("call_id"))
    text = {name: _optional_text(payload, name) for name in TEXT_FIELDS}
    times = {name: _optional_time(payload, name) for name in TIME_FIELDS}
    if len(text["summary"]) > MAX_SUMMARY_CHARS:
        raise CallSummaryTooLarge(
            f"summary of {len(text['summary']):,} characters is over the limit "
            f"of {MAX_SUMMARY_CHARS:,} characters"
        )
    caller, extension = _phone(text["caller"])
    line, _ = _phone(text["to"] or text["business_line"])
    return CallSummaryReport(
        call_id=call_id,
        summary=text["summary"],
        urgency=text["urgency"].lower()[:16],
        caller=caller,
        caller_extension=extension,
        line=line,
        started_at=_moment(times["started_at"]),
        ended_at=_moment(times["ended_at"]),
    )


def call_summary_store(*, payload: dict) -> tuple[WebhookEvent | None, bool]:
    """Keep one verified report in the inbox, once per content; queue it.

    The first report of a call is stored under its call id. A later one
    that differs from every earlier report is a correction, stored under
    the call id and a digest of its content; a replay of any of them stores
    nothing. Returns (event, created). Raises CallSummaryInvalid when the
    report cannot be taken.
    """
    report = call_summary_parse(payload=payload)
    event = webhook_event_insert(
        provider=PROVIDER_CALLS,
        kind=KIND_CALL_SUMMARY,
        event_id=report.call_id,
        payload=payload,
    )
    if event is None:
        first = WebhookEvent.objects.filter(
            provider=PROVIDER_CALLS, event_id=report.call_id
        ).first()
        if first is not None and first.payload != payload:
            event = webhook_event_insert(
                provider=PROVIDER_CALLS,
                kind=KIND_CALL_SUMMARY,
                event_id=_correction_event_id(report.call_id, payload),
                payload=payload,
            )
        if event is None:
            logger.info(
                "call summary: replay of a stored report call=%s ignored",
                report.call_id,
            )
            return first, False

    from .tasks import call_summary_process

    transaction.on_commit(lambda: call_summary_process.delay(event.pk), robust=True)
    logger.info(
        "call summary: %s stored call=%s id=%s",
        "report" if event.event_id == report.call_id else "corrected report",
        report.call_id,
        event.pk,
    )
    return event, True


def _correction_event_id(call_id: str, payload: dict) -> str:
    """The inbox id of a later report: the call id and its content's digest.

    The digest is of the document, not of the bytes, so a replay written
    with other spacing or key order is the same report.
    """
    document = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    digest = hashlib.sha256(document.encode()).hexdigest()[:32]
    return f"{call_id}{CORRECTION_SEPARATOR}{digest}"


def _reports_of_call(call_id: str):
    """The inbox rows of every report of one call, its corrections too."""
    return WebhookEvent.objects.filter(
        provider=PROVIDER_CALLS, kind=KIND_CALL_SUMMARY
    ).filter(
        Q(event_id=call_id) | Q(event_id__startswith=f"{call_id}{CORRECTION_SEPARATOR}")
    )


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

        newer = _reports_of_call(report.call_id).filter(pk__gt=event.pk)
        # Limitation: a newer report that later fails for good (5 crashed
        # attempts) leaves the call without this one's summary either.
        if newer.exclude(status=WebhookEvent.Status.FAILED).exists():
            # Two workers may take a report and its correction in either
            # order: the newest report is the one the call keeps.
            event.status = WebhookEvent.Status.IGNORED
            event.last_error = "superseded by a later report of the same call"
            event.save(update_fields=["status", "last_error", "processed_at"])
            logger.info(
                "call summary: report id=%s call=%s superseded, not applied",
                event.pk,
                report.call_id,
            )
            return None

        call, created = _call_for_report(report)
        correction = event.event_id != report.call_id
        _report_apply(call, report, created=created)
        event.status = WebhookEvent.Status.PROCESSED
        event.save(update_fields=["status", "processed_at"])
        call_summary_sms_settle(call=call, correction=correction)
        call_id = call.pk
        transaction.on_commit(lambda: call_airtable_sync.delay(call_id))
    logger.info(
        "call summary: call id=%s sid=%s summary recorded urgency=%s (%s%s)",
        call.pk,
        call.provider_call_id,
        call.urgency or "-",
        "new call" if created else "existing call",
        ", corrected" if correction else "",
    )
    return call


def call_summary_sms_settle(
    *, call: Call, correction: bool = False
) -> Notification | None:
    """Make sure the on-call person gets the summary text, by one SMS if we can.

    Call inside the transaction that recorded the summary. If the call's
    SMS is not owed yet or has not left, it is owed or rewritten with the
    summary (`call_summary_owe` holds it until the call has ended, at most
    CALL_SUMMARY_WAIT_SECONDS). If it already went out saying "Summary to
    follow", a second SMS carries the summary. A call whose business is
    unknown yet waits for its status callback, which owes the SMS with the
    summary in it.

    A `correction` (a later, different report of the call) rewrites the
    newest SMS that has not left yet; once they have all left it owes one
    correction SMS, and only one whatever follows: a stream of corrections
    must not become a stream of texts at night. Locks the call's SMS rows.
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
    if correction:
        return _correction_sms_settle(call=call, sent=sent, text=text)
    if text == sent.body or call.summary.strip()[:60] in sent.body:
        return sent
    follow_up, created = _follow_up_owe(call, sent, kind="followup", body=text)
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


def _correction_sms_settle(
    *, call: Call, sent: Notification, text: str
) -> Notification:
    corrected = f"Corrected: {text}"
    later = list(
        Notification.objects.select_for_update()
        .filter(
            call=call,
            dedupe_key__in=[
                _follow_up_key(call, sent, "followup"),
                _follow_up_key(call, sent, "correction"),
            ],
        )
        .order_by("pk")
    )
    newest = later[-1] if later else sent
    if newest.body in (text, corrected):
        return newest
    if newest.state == Notification.State.PENDING and not newest.attempts:
        is_correction = newest.dedupe_key.startswith(f"call_summary:{call.pk}:corr")
        if notification_rewrite(
            notification_id=newest.pk, body=corrected if is_correction else text
        ):
            logger.info(
                "call summary: call id=%s corrected; SMS id=%s not sent yet, rewritten",
                call.pk,
                newest.pk,
            )
            return newest
    if any(row.dedupe_key.startswith(f"call_summary:{call.pk}:corr") for row in later):
        logger.warning(
            "call summary: call id=%s corrected again after its correction SMS "
            "id=%s left; on-call is not texted again (the call and Airtable "
            "have the correction)",
            call.pk,
            newest.pk,
        )
        return newest
    correction_sms, created = _follow_up_owe(
        call, sent, kind="correction", body=corrected
    )
    if created:
        logger.info(
            "call summary: call id=%s corrected after its SMS left; correction "
            "SMS id=%s to %s",
            call.pk,
            correction_sms.pk,
            mask_phone(sent.recipient),
        )
    return correction_sms


def _follow_up_owe(
    call: Call, sent: Notification, *, kind: str, body: str
) -> tuple[Notification, bool]:
    """A second SMS of a call to the person its first went to, once a kind."""
    return notification_enqueue(
        channel=Notification.Channel.SMS,
        reason=Notification.Reason.CALL_SUMMARY,
        recipient=sent.recipient,
        sender=sent.sender,
        body=body,
        dedupe_key=_follow_up_key(call, sent, kind),
        call=call,
    )


def _follow_up_key(call: Call, sent: Notification, kind: str) -> str:
    return f"call_summary:{call.pk}:{kind}:sms:{sent.recipient}"


def call_summary_events_stuck_ids(
    *, now: datetime | None = None, limit: int = 500
) -> list[int]:
    """Reports still pending long after they were stored."""
    return webhook_events_stuck_ids(
        provider=PROVIDER_CALLS,
        kind=KIND_CALL_SUMMARY,
        older_than=EVENT_STUCK_AFTER,
        now=now,
        limit=limit,
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


def _call_id(value) -> str:
    if value is None:
        raise CallSummaryInvalid("no call_id")
    if not isinstance(value, str):
        raise CallSummaryInvalid(
            f"call_id must be a JSON string, not {_json_type(value)}"
        )
    call_id = value.strip()
    if not CALL_SID_RE.fullmatch(call_id):
        # The voice webhook's rule: a report under any other id would make
        # a call that no status callback can ever match.
        raise CallSummaryInvalid(
            f"call_id {call_id[:70]!r} is not a call SID (2 to 64 letters and digits)"
        )
    return call_id


def _optional_text(payload: dict, name: str) -> str:
    value = payload.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CallSummaryInvalid(
            f"{name} must be a JSON string or null, not {_json_type(value)}"
        )
    return value.strip()


def _optional_time(payload: dict, name: str):
    value = payload.get(name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise CallSummaryInvalid(
        f"{name} must be an ISO 8601 string, Unix seconds or null, not "
        f"{_json_type(value)}"
    )


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


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
    text = value.strip() if isinstance(value, str) else ""
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

    413 for a body over MAX_REPORT_BYTES (400, as Django answers, over
    DATA_UPLOAD_MAX_MEMORY_SIZE when that is lower); 403 unless signed
    with our secret within five minutes; 400 for a body that is not a
    report we can take, 413 for a summary over MAX_SUMMARY_CHARS; 200 once
    stored, and 200 for a replay (the inbox decides what it changes).
    Nothing is stored for any 4xx.
    """
    try:
        body = _body_within_limit(request)
    except CallSummaryInvalid as exc:
        logger.warning("call summary report refused: %s", exc)
        status = 413 if isinstance(exc, CallSummaryTooLarge) else 400
        return _refusal(exc, status=status)
    header = request.META.get(SIGNATURE_HEADER, "")
    if not call_summary_request_valid(body=body, header=header):
        return HttpResponse("invalid signature", status=403, content_type="text/plain")
    try:
        call_summary_store(payload=json_body_parse(body))
    except CallSummaryTooLarge as exc:
        logger.warning("call summary report refused: %s", exc)
        return _refusal(exc, status=413)
    except ValueError as exc:
        # JsonBodyInvalid and CallSummaryInvalid are ValueErrors.
        logger.warning("call summary report refused: %s", exc)
        return _refusal(exc, status=400)
    return HttpResponse(status=200)


def _body_within_limit(request: HttpRequest) -> bytes:
    """The raw body; CallSummaryInvalid when it is over a limit.

    Over MAX_REPORT_BYTES: CallSummaryTooLarge (413), refused by its
    declared length before it is read. Over Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE, when that is lower: Django's 400, with
    the reason said instead of a bare "Bad Request".
    """
    django_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if django_limit is not None and django_limit < MAX_REPORT_BYTES:
        too_large = CallSummaryInvalid(
            f"the report is over the limit of {django_limit:,} bytes "
            "(DATA_UPLOAD_MAX_MEMORY_SIZE)"
        )
        limit = django_limit
    else:
        too_large = CallSummaryTooLarge(
            f"the report is over the limit of {MAX_REPORT_BYTES:,} bytes"
        )
        limit = MAX_REPORT_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise too_large
    try:
        body = request.body
    except RequestDataTooBig:
        raise too_large from None
    if len(body) > limit:
        raise too_large
    return body


def _refusal(exc: Exception, *, status: int) -> HttpResponse:
    return HttpResponse(
        f"report refused: {exc}", status=status, content_type="text/plain"
    )
