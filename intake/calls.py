"""Calls, from Twilio Voice status callbacks.

A callback whose signature checks is stored in the inbox (WebhookEvent)
before anything else happens, and a task processes it: the Call row is
created or moved, and when the call completes, a summary SMS to the
business's first on-call contact is owed through the outbox in the same
transaction. Callbacks arrive late, twice and out of order; the sequence
number and the terminal states decide what may move a call.
"""

import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import OnCallContact, PhoneLine
from afterhours.privacy import mask_phone
from notifications.models import Notification
from notifications.services import (
    notification_enqueue,
    notification_rewrite,
    ops_alert_owe,
)

from .airtable import call_airtable_changed
from .inbox import (
    webhook_event_alert,
    webhook_event_attempt_begin,
    webhook_event_insert,
    webhook_events_stuck_ids,
)
from .models import Call, WebhookEvent

logger = logging.getLogger(__name__)

PROVIDER_TWILIO = "twilio"
KIND_VOICE_STATUS = "voice_status"

Status = Call.Status
TERMINAL_STATUSES = frozenset(
    {Status.COMPLETED, Status.BUSY, Status.NO_ANSWER, Status.CANCELED, Status.FAILED}
)
# Names Twilio uses for progress events that our status list spells
# differently.
STATUS_ALIASES = {"initiated": Status.QUEUED, "answered": Status.IN_PROGRESS}
# A pending inbox row older than this lost its task (broker down when the
# webhook committed); the sweep queues it again.
EVENT_STUCK_AFTER = timedelta(minutes=2)
MAX_EVENT_ATTEMPTS = 5
# Twilio's are CA + 32 hex digits; anything that could not fit the call's
# id column is refused up front rather than failing at the insert.
CALL_SID_RE = re.compile(r"[A-Za-z0-9]{2,64}")
SUMMARY_MAX_CHARS = 480
# How far ahead of our clock a callback's own Timestamp may be and still be
# believed; beyond it the sender's clock is wrong and the arrival time is
# the better guess.
CLOCK_SKEW = timedelta(minutes=5)
# What a status event may write on a call.
EVENT_FIELDS = (
    "status",
    "last_sequence",
    "caller_number",
    "started_at",
    "ended_at",
    "duration_seconds",
)


class CallEventInvalid(ValueError):
    """A signed callback we cannot read as a call status; kept, not retried."""


@dataclass(frozen=True)
class CallStatusEvent:
    """One voice status callback, in our words."""

    call_sid: str
    status: str
    sequence: int | None
    dialled_number: str
    caller_number: str
    occurred_at: datetime
    duration_seconds: int | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class CallUpsertResult:
    call: Call
    created: bool
    changed: bool
    completed_now: bool


def call_status_event_id(*, payload: dict) -> str:
    """The inbox key of a voice callback: `<CallSid>:<SequenceNumber>`.

    A callback without a sequence number (not a call-progress event) is
    keyed on its status instead, so each status is still taken once.
    """
    call_sid = _call_sid(payload)
    sequence = _value(payload, "SequenceNumber")
    if sequence:
        return f"{call_sid}:{sequence}"
    return f"{call_sid}:status-{_value(payload, 'CallStatus')}"


def call_status_event_store(*, payload: dict) -> tuple[WebhookEvent, bool]:
    """Keep one verified voice callback in the inbox; queue it on commit.

    Returns (event, created). A callback already stored (Twilio's retry, a
    duplicate delivery) returns the existing row and queues nothing.
    Raises CallEventInvalid when the payload names no call.
    """
    event_id = call_status_event_id(payload=payload)
    from .tasks import call_event_process

    event = webhook_event_insert(
        provider=PROVIDER_TWILIO,
        kind=KIND_VOICE_STATUS,
        event_id=event_id,
        payload=payload,
    )
    if event is None:
        existing = WebhookEvent.objects.get(provider=PROVIDER_TWILIO, event_id=event_id)
        logger.info(
            "calls: duplicate voice callback event=%s id=%s ignored",
            event_id,
            existing.pk,
        )
        return existing, False
    # robust: the callback is safe in the inbox; if the broker is down the
    # sweep queues it later, and Twilio still gets its 200.
    transaction.on_commit(lambda: call_event_process.delay(event.pk), robust=True)
    logger.info("calls: voice callback stored event=%s id=%s", event_id, event.pk)
    return event, True


def call_status_event_parse(*, payload: dict, received_at: datetime) -> CallStatusEvent:
    """Read a stored voice callback; raise CallEventInvalid if it is not one."""
    call_sid = _call_sid(payload)
    raw_status = _value(payload, "CallStatus").lower()
    status = STATUS_ALIASES.get(raw_status, raw_status)
    if status not in Status.values:
        raise CallEventInvalid(f"unknown CallStatus {raw_status!r}")
    try:
        sequence = _number(payload, "SequenceNumber")
        duration = _number(payload, "CallDuration")
    except ValueError as exc:
        raise CallEventInvalid(f"not a number: {exc}") from exc
    return CallStatusEvent(
        call_sid=call_sid,
        status=status,
        sequence=sequence,
        dialled_number=_printable(_value(payload, "To"))[:20],
        caller_number=_printable(_value(payload, "From"))[:20],
        occurred_at=_timestamp(_value(payload, "Timestamp"), received_at=received_at)
        or received_at,
        duration_seconds=duration,
    )


def call_event_record(*, webhook_event_id: int) -> Call | None:
    """Process one stored voice callback; safe to run any number of times.

    The attempt is counted in its own short transaction first, so a callback
    that keeps failing (a bug, not a readable fault) is written off after
    MAX_EVENT_ATTEMPTS instead of being queued by the sweep for ever. Then
    the inbox row and the call row are locked (select_for_update), so two
    callbacks of one call are applied one after the other. An event already
    processed returns None. The Airtable sync is queued on commit when the
    call changed.
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
            parsed = call_status_event_parse(
                payload=event.payload, received_at=event.received_at
            )
        except CallEventInvalid as exc:
            event.status = WebhookEvent.Status.FAILED
            event.last_error = str(exc)
            event.save(update_fields=["status", "last_error", "processed_at"])
            logger.warning(
                "calls: voice callback id=%s event=%s unreadable: %s",
                event.pk,
                event.event_id,
                exc,
            )
            webhook_event_alert(event=event, what="unreadable")
            return None

        result = call_upsert_from_status(event=parsed)
        event.status = (
            WebhookEvent.Status.PROCESSED
            if result.changed
            else WebhookEvent.Status.IGNORED
        )
        event.save(update_fields=["status", "processed_at"])
        if result.changed:
            call_id = result.call.pk
            transaction.on_commit(lambda: call_airtable_sync.delay(call_id))
    return result.call


def call_upsert_from_status(*, event: CallStatusEvent) -> CallUpsertResult:
    """Create the call or move it by one status event; owe its summary.

    Must run inside a transaction: takes a row lock on the call. An event
    older than the last one applied (lower sequence) or arriving after a
    terminal status changes nothing. When the call reaches "completed", the
    summary SMS is owed in this same transaction.
    """
    calls = Call.objects.select_for_update()
    call = calls.filter(provider_call_id=event.call_sid).first()
    created = False
    if call is None:
        # Two first events of one call can race here; get_or_create lets the
        # loser wait for the winner's row and lock it.
        call, created = calls.get_or_create(
            provider_call_id=event.call_sid, defaults=_fields_for_new_call(event)
        )
    if created:
        changed = True
        completed_now = call.status == Status.COMPLETED
        logger.info(
            "calls: call id=%s sid=%s recorded status=%s seq=%s business=%s",
            call.pk,
            call.provider_call_id,
            call.status,
            event.sequence,
            call.business_id,
        )
        if call.business_id is None:
            logger.warning(
                "calls: call id=%s sid=%s to unknown number %s recorded "
                "without a business",
                call.pk,
                call.provider_call_id,
                mask_phone(event.dialled_number),
            )
            _unrouted_call_alert(call)
    else:
        changed = _event_moves_call(call, event)
        completed_now = changed and event.status == Status.COMPLETED
        if changed:
            previous = call.status
            _apply(call, event)
            if call.business_id is None:
                _business_fill(call, event)
            # The Airtable record is stale now: the sync task queued on
            # commit pushes it, or the Airtable sweep should that be lost.
            call_airtable_changed(call)
            call.save(
                update_fields=[
                    *EVENT_FIELDS,
                    "business",
                    "dialled_number",
                    "airtable_state",
                    "airtable_next_attempt_at",
                    "updated_at",
                ]
            )
            logger.info(
                "calls: call id=%s sid=%s status %s -> %s seq=%s",
                call.pk,
                call.provider_call_id,
                previous,
                call.status,
                event.sequence,
            )
        else:
            logger.info(
                "calls: call id=%s sid=%s stale event status=%s seq=%s ignored "
                "(call is %s at seq %s)",
                call.pk,
                call.provider_call_id,
                event.status,
                event.sequence,
                call.status,
                call.last_sequence,
            )

    if completed_now:
        call_summary_owe(call=call)
    return CallUpsertResult(
        call=call, created=created, changed=changed, completed_now=completed_now
    )


def call_summary_owe(*, call: Call) -> Notification | None:
    """Owe the summary SMS of a call to the first on-call contact.

    Call inside the transaction that completed the call or recorded its
    end-of-call report (intake.call_summary). Idempotent: the dedupe key
    names the call and the number. So that one SMS carries the summary,
    while only one half is in (the call ended, or its summary) the SMS is
    held for CALL_SUMMARY_WAIT_SECONDS (the outbox sweep sends it as it is
    when the hold ends); once both are in, a held SMS goes at once, with
    the whole text.

    A business whose on-call people have an email and no phone gets the
    summary by email the same way; one with nobody on call at all is
    reported to operations, who can call the caller back.
    """
    if call.business_id is None:
        return None
    contacts = OnCallContact.objects.filter(business_id=call.business_id).order_by(
        "order", "id"
    )
    contact = contacts.exclude(phone="").first()
    if contact is not None:
        channel, recipient = Notification.Channel.SMS, contact.phone
    else:
        contact = contacts.exclude(email="").first()
        if contact is None:
            _nobody_on_call_alert(call)
            return None
        channel, recipient = Notification.Channel.EMAIL, contact.email
    both_in = bool(call.summary) and call.status in TERMINAL_STATUSES
    send_after = None if both_in else _summary_hold_until()
    body = call_summary_text(call=call)
    email = channel == Notification.Channel.EMAIL
    notification, created = notification_enqueue(
        channel=channel,
        reason=Notification.Reason.CALL_SUMMARY,
        recipient=recipient,
        subject=call_summary_subject(call=call) if email else "",
        body=body,
        headers={"Auto-Submitted": "auto-generated"} if email else None,
        dedupe_key=f"call_summary:{call.pk}:{channel}:{recipient}",
        sender="" if email else settings.TWILIO_FROM_NUMBER,
        call=call,
        send_after=send_after,
    )
    if not created and both_in:
        # Held for the half that just arrived: it goes now, whole.
        notification_rewrite(notification_id=notification.pk, body=body)
    return notification


def _summary_hold_until() -> datetime | None:
    """When an SMS waiting for the other half of its call goes anyway.

    None (no wait) when CALL_SUMMARY_WAIT_SECONDS is 0 or no summary can
    arrive (no CALL_SUMMARY_WEBHOOK_SECRET).
    """
    seconds = settings.CALL_SUMMARY_WAIT_SECONDS
    if seconds <= 0 or not settings.CALL_SUMMARY_WEBHOOK_SECRET:
        return None
    return timezone.now() + timedelta(seconds=seconds)


def call_summary_text(*, call: Call) -> str:
    """The SMS an on-call contact reads: who called, when, how long, what."""
    business = call.business
    moment = call.started_at or call.ended_at or call.created_at
    local = moment.astimezone(business.zone)
    when = f"{local:%a %b} {local.day}, {local.hour % 12 or 12}:{local:%M %p %Z}"
    caller = _printable(call.caller_number) or "an unknown number"
    summary = _printable(call.summary, keep="\n").strip()
    if len(summary) > SUMMARY_MAX_CHARS:
        summary = summary[: SUMMARY_MAX_CHARS - 1].rstrip() + "…"
    summary = summary or "Summary to follow."
    return (
        f"{business.name}: call from {caller} at {when}, "
        f"{_duration_text(call.duration_seconds)}. {summary}"
    )


def call_summary_subject(*, call: Call) -> str:
    caller = _printable(call.caller_number) or "an unknown number"
    return f"Call summary: {call.business.name}, call from {caller}"


def _unrouted_call_alert(call: Call) -> None:
    """A call to a number no business owns: its caller reached nobody."""
    number = _printable(call.dialled_number) or "(no number)"
    caller = _printable(call.caller_number) or "an unknown number"
    # Topic and subject are logged: they name the number by a digest and by
    # its last four digits only.
    digest = hashlib.sha256(number.encode()).hexdigest()[:16]
    ops_alert_owe(
        topic=f"unrouted:{digest}",
        subject=f"Calls to a number ending {number[-4:]} reach no business",
        body=(
            f"Call {call.provider_call_id} from {caller} came in on {number}, "
            "which is no business's phone line, so no business was told of "
            "it and no on-call person got its summary. If a customer routes "
            "this number to us, add it to their phone lines in admin; call "
            "the caller back if it may be urgent. Further calls to this "
            "number within the hour are not alerted again."
        ),
    )


def _nobody_on_call_alert(call: Call) -> None:
    business = call.business
    caller = _printable(call.caller_number) or "an unknown number"
    logger.warning(
        "calls: call id=%s completed but business id=%s has nobody on call "
        "(no on-call contact with a phone or an email); operations alerted",
        call.pk,
        call.business_id,
    )
    ops_alert_owe(
        topic=f"no-oncall:{business.pk}",
        subject=f"{business.name} has nobody on call: call summaries undelivered",
        body=(
            f"Call {call.provider_call_id} from {caller} for {business.name} "
            "completed, but the business has nobody on call (no on-call "
            "contact with a phone or an email), so its summary reached no "
            "one. Call the business, add an on-call contact in admin, and "
            "call the caller back if it may be urgent."
        ),
    )


def call_events_stuck_ids(
    *, now: datetime | None = None, limit: int = 500
) -> list[int]:
    """Voice callbacks still pending long after they were stored."""
    return webhook_events_stuck_ids(
        provider=PROVIDER_TWILIO,
        kind=KIND_VOICE_STATUS,
        older_than=EVENT_STUCK_AFTER,
        now=now,
        limit=limit,
    )


def _fields_for_new_call(event: CallStatusEvent) -> dict:
    line = (
        PhoneLine.objects.filter(number=event.dialled_number)
        .select_related("business")
        .first()
    )
    call = Call(
        business=line.business if line else None,
        dialled_number=event.dialled_number,
    )
    _apply(call, event)
    fields = {name: getattr(call, name) for name in EVENT_FIELDS}
    return {**fields, "business": call.business, "dialled_number": event.dialled_number}


def _business_fill(call: Call, event: CallStatusEvent) -> None:
    """A call first heard of from its end-of-call report learns its line."""
    if not event.dialled_number:
        return
    line = PhoneLine.objects.filter(number=event.dialled_number).first()
    if line is not None:
        call.business_id = line.business_id
    call.dialled_number = call.dialled_number or event.dialled_number


def _event_moves_call(call: Call, event: CallStatusEvent) -> bool:
    if call.status in TERMINAL_STATUSES:
        # A terminal status is never undone, whatever the sequence says.
        return False
    if event.sequence is not None and event.sequence <= call.last_sequence:
        return False
    return True


def _apply(call: Call, event: CallStatusEvent) -> None:
    call.status = event.status
    if event.sequence is not None:
        call.last_sequence = event.sequence
    if not call.caller_number:
        call.caller_number = event.caller_number
    if event.terminal:
        call.ended_at = event.occurred_at
        if event.duration_seconds is not None:
            call.duration_seconds = event.duration_seconds
    if call.started_at is None:
        # The first event we hear of; a terminal one carries the talk time,
        # which puts the start at about the answer.
        call.started_at = event.occurred_at - timedelta(
            seconds=event.duration_seconds
            if event.terminal and event.duration_seconds
            else 0
        )


def _call_sid(payload: dict) -> str:
    call_sid = _value(payload, "CallSid")
    if not call_sid:
        raise CallEventInvalid("no CallSid")
    if not CALL_SID_RE.fullmatch(call_sid):
        raise CallEventInvalid("CallSid is not a call id (letters and digits, <= 64)")
    return call_sid


def _value(payload: dict, key: str) -> str:
    """One parameter as text; the first of a repeated one."""
    value = payload.get(key)
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value or "").strip()


def _number(payload: dict, key: str) -> int | None:
    """A counter or a duration: a whole number that fits our columns."""
    value = _value(payload, key)
    if not value:
        return None
    number = int(value)
    if not 0 <= number < 2**31:
        raise ValueError(f"{key}={value!r} out of range")
    return number


def _timestamp(value: str | None, *, received_at: datetime) -> datetime | None:
    """Twilio's RFC 2822 `Timestamp` as an aware datetime; None if unreadable,
    out of range, or further ahead of its arrival than clocks differ."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
        if timezone.is_naive(moment):
            # RFC 2822 "-0000" means UTC with no zone information.
            moment = moment.replace(tzinfo=UTC)
        # Year 9999 in a zone west of UTC is past what a datetime can hold.
        moment.astimezone(UTC)
    except (TypeError, ValueError, OverflowError):
        return None
    if moment > received_at + CLOCK_SKEW:
        return None
    return moment


def _printable(text: str, *, keep: str = "") -> str:
    """`text` without control and format characters (but those in `keep`).

    A bell or a right-to-left override in a number or a summary means
    nothing to the person reading the SMS, and the override would show the
    rest of the text backwards.
    """
    return "".join(
        char
        for char in text
        if char in keep or unicodedata.category(char) not in ("Cc", "Cf")
    )


def _duration_text(seconds: int | None) -> str:
    if seconds is None:
        return "duration unknown"
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
