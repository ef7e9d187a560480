"""Sending outbox rows, each at most once per claim, and retrying them.

One delivery is three steps: claim the row under a row lock in a short
transaction (pending/failed -> sending, attempts + 1) and commit; call the
provider outside any transaction; record the outcome. The claim is the only
way to a send, so a row that is already sent, delivered or written off is
never sent again, and two workers handed the same row send it once.

Retry state lives on the row (`state`, `attempts`, `next_attempt_at`), not
in the broker: `outbox_due_ids` finds what a beat sweep must queue again, so
a restarted worker, beat or broker loses nothing. A pending row with a
`next_attempt_at` is held until then (a call's SMS waiting for its summary,
a message waiting for a free slot on its sender number).

Messages from one sender number start no faster than its send rate
(TWILIO_SENDER_RATE_PER_SECOND), counted in Redis across every worker. An
SMS written off as undeliverable (or suppressed) owes its email fallback in
the same transaction (`notifications.fallback`).

Once that email is owed (also by the delivery-deadline sweep, while the SMS
is still pending, held, failing and retrying, or lost with its worker) the
SMS is not sent any more: its claim writes it off as undeliverable, code
"superseded". If an earlier attempt may have reached Twilio unseen, Twilio
is asked first, as before any re-send: a message it has is recorded as
sent (its delivery report then lands on the row), and nothing is sent
again either way. An email fallback whose SMS was delivered meanwhile is
cancelled by its claim instead of sent.
"""

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from afterhours.privacy import mask_email, mask_phone
from intake.ratelimit import (
    RateLimitBlocked,
    RateLimitBusy,
    RateLimiter,
    rate_limit_acquire,
    rate_limiter_for,
)

from .fallback import (
    SUPERSEDED,
    fallback_cancel,
    fallback_sms_delivered,
    notification_fallback_owe,
    sms_fallback_owed,
)
from .models import Notification, Suppression
from .providers.email import email_send
from .providers.errors import (
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from .providers.twilio_sms import (
    OPTED_OUT,
    SmsResult,
    sms_configured,
    sms_find_sent,
    sms_send,
)

logger = logging.getLogger(__name__)

State = Notification.State
Channel = Notification.Channel

# Attempts before a transiently failing row is written off as undeliverable;
# with the backoff below that is at most about 15 minutes of trying, after
# which a call summary is better served by the fallback channel.
MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 30 * 60
# A claim older than this has lost its worker (killed, or the record step
# failed); the sweep hands the row out again. Longer than a claim can last
# (slot wait, look-up and send with their timeouts: about 35 s), and short
# enough that the row is retried, and a message Twilio already took is found,
# while its delivery report still waits for it (intake.sms_status
# UNMATCHED_PATIENCE, 2 minutes) and well before the SMS delivery deadline
# sends the email fallback: a five-minute lease let both give up first.
CLAIM_LEASE = timedelta(seconds=60)
# A worker killed after the provider took a message but before the outcome
# was written leaves the row "sending"; a timeout leaves it "failed" though
# Twilio may have it. Before any re-send, Twilio's recent messages to that
# number are checked for the same body (the Messages API has no idempotency
# key). Twilio's clock and ours may differ by this much.
CLOCK_MARGIN = timedelta(minutes=1)
# A pending row whose queued task has not claimed it by then lost its task
# (broker down at commit time).
PENDING_STUCK_AFTER = timedelta(minutes=3)
CLAIMABLE = (State.PENDING, State.FAILED, State.SENDING)
# Twilio queues what a number sends beyond its rate and counts where the
# messages arrive; we count where they leave, so our window is a little wider
# than a second.
SENDER_RATE_WINDOW_SECONDS = 1.1
# The longest a send waits in its worker for a slot on its sender number;
# past that the row is rescheduled and the worker moves on.
SENDER_SLOT_MAX_WAIT_SECONDS = 2.0
# Rows rescheduled for a slot come back spread over this many seconds, not
# all at the moment the next slot frees.
SENDER_RETRY_SPREAD_SECONDS = 5.0


def retry_delay(*, attempts: int) -> timedelta:
    """Exponential backoff with jitter after the `attempts`-th failure.

    30 s, 60 s, 120 s ... capped at 30 minutes, each drawn from the upper
    half of its step so a burst of failures does not come back as a burst.
    """
    step = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=random.uniform(step / 2, step))


def notification_deliver(*, notification_id: int) -> None:
    """Send one outbox row if it is owed and nobody else is sending it.

    Takes a row lock (select_for_update) only for the claim and for the
    outcome; the provider is called with no transaction open. Provider
    errors are recorded on the row, not raised: a transient one sets
    `next_attempt_at` for the sweep, a permanent one writes the row off.
    """
    claim = _claim(notification_id=notification_id)
    if claim is None:
        return
    notification = claim.notification

    try:
        result = None
        if claim.lost_since is not None:
            result = _sent_before(
                notification, since=claim.lost_since, exclude=claim.exclude
            )
        if result is None:
            if claim.superseded_by is not None:
                # Limitation: when Twilio cannot be asked, a message an
                # earlier attempt left there unseen stays unclaimed (its
                # reports are set aside); the email goes either way.
                _record_superseded(notification, fallback_id=claim.superseded_by)
                return
            if not _sender_slot(claim):
                return
            result = _send(notification)
    except PermanentProviderError as exc:
        _record_undeliverable(notification, exc)
        return
    except TransientProviderError as exc:
        _record_failure(notification, exc)
        return
    except Exception as exc:
        # A bug or a misconfiguration: keep the row retryable (attempts are
        # capped) instead of leaving it "sending", and let the task fail
        # loudly.
        _record_failure(notification, ProviderError(repr(exc), code="error"))
        raise

    if result.logged:
        if _record(notification, state=State.LOGGED, next_attempt_at=None):
            logger.info("outbox: notification id=%s logged, not sent", notification.pk)
        return
    recorded = _record(
        notification,
        state=State.SENT,
        provider_message_id=result.message_id,
        sent_at=timezone.now(),
        next_attempt_at=None,
        # A re-sent message starts its own delivery reports.
        delivery_status="",
    )
    if recorded:
        logger.info(
            "outbox: notification id=%s sent channel=%s provider_id=%s attempt=%s",
            notification.pk,
            notification.channel,
            result.message_id,
            notification.attempts,
        )


def outbox_due_ids(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Rows a sweep must queue again, oldest due first.

    Failed rows whose retry time has come, claims whose lease ran out (the
    worker died mid-send), held rows whose hold has ended, and pending rows
    whose task never ran.
    """
    now = now or timezone.now()
    due = (
        Q(state=State.FAILED, next_attempt_at__lte=now)
        | Q(state=State.SENDING, next_attempt_at__lte=now)
        | Q(state=State.PENDING, next_attempt_at__lte=now)
        | Q(
            state=State.PENDING,
            next_attempt_at__isnull=True,
            created_at__lte=now - PENDING_STUCK_AFTER,
        )
    )
    rows = Notification.objects.filter(due).order_by("next_attempt_at", "pk")
    return list(rows.values_list("pk", flat=True)[:limit])


@dataclass(frozen=True)
class _Claim:
    notification: Notification
    # The state the row was claimed from, to give the claim back unused.
    claimed_from: str
    # Since when an earlier attempt may have reached the provider unseen;
    # None on the first attempt.
    lost_since: datetime | None = None
    # Messages of earlier attempts that Twilio reported undelivered.
    exclude: frozenset[str] = frozenset()
    # The email fallback already owed in place of this SMS: the claim only
    # looks for an earlier attempt at Twilio, it never sends.
    superseded_by: int | None = None


def _claim(*, notification_id: int) -> _Claim | None:
    """Lock the row and mark it ours; None when there is nothing to send."""
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update().filter(pk=notification_id).first()
        )
        if notification is None:
            logger.info("outbox: notification id=%s is gone", notification_id)
            return None
        if notification.state not in CLAIMABLE:
            return None
        now = timezone.now()
        if notification.next_attempt_at and notification.next_attempt_at > now:
            # Failed and not yet due, held, or another worker's claim still
            # holds.
            return None

        # Any earlier attempt may have reached the provider unseen (a timeout,
        # a worker lost mid-send), so every re-send looks for it first.
        lost_since = None
        exclude: frozenset[str] = frozenset()
        if notification.attempts and notification.provider_message_id:
            # Re-sending after Twilio reported the last message undelivered:
            # only attempts made since can be lost, and that message is not
            # one of them (earlier ones are older than the margin: the
            # unreachable backoff is longer, see delivery_reports).
            lost_since = (notification.sent_at or notification.created_at) - (
                CLOCK_MARGIN
            )
            exclude = frozenset({notification.provider_message_id})
        elif notification.attempts:
            lost_since = notification.created_at - CLOCK_MARGIN
        if notification.state == State.SENDING:
            logger.warning(
                "outbox: notification id=%s claim expired after attempt %s, "
                "its worker was lost; outcome of that attempt unknown",
                notification.pk,
                notification.attempts,
            )
            if notification.attempts >= MAX_ATTEMPTS:
                _write_off(
                    notification,
                    code="lost",
                    error=f"gave up after {notification.attempts} attempts; "
                    "the last one was lost with its worker",
                )
                return None

        if notification.channel == Channel.SMS and not notification.sender:
            notification.sender = settings.TWILIO_FROM_NUMBER
        fallback = sms_fallback_owed(notification=notification)
        if fallback is not None and lost_since is None:
            # Nothing of it reached Twilio; the email replaces it.
            _supersede(notification, fallback=fallback)
            return None
        delivered_sms = fallback_sms_delivered(email=notification)
        if delivered_sms is not None:
            fallback_cancel(email=notification, sms=delivered_sms, locked=True)
            return None
        if _suppressed(notification):
            notification.state = State.SUPPRESSED
            notification.next_attempt_at = None
            notification.save(update_fields=["state", "sender", "next_attempt_at"])
            logger.info(
                "outbox: notification id=%s suppressed channel=%s to=%s",
                notification.pk,
                notification.channel,
                _masked(notification),
            )
            notification_fallback_owe(
                notification=notification,
                why="could not be sent: this number has opted out of our texts",
            )
            return None

        claimed_from = notification.state
        notification.state = State.SENDING
        notification.attempts += 1
        notification.next_attempt_at = now + CLAIM_LEASE
        notification.save(
            update_fields=["state", "attempts", "next_attempt_at", "sender"]
        )
    return _Claim(
        notification=notification,
        claimed_from=claimed_from,
        lost_since=lost_since,
        exclude=exclude,
        superseded_by=fallback.pk if fallback is not None else None,
    )


def sender_rate_limiter() -> RateLimiter:
    """The limiter every worker shares: messages started per sender number."""
    return rate_limiter_for(
        name="twilio-sender",
        limit=settings.TWILIO_SENDER_RATE_PER_SECOND,
        period=SENDER_RATE_WINDOW_SECONDS,
    )


def _sender_slot(claim: _Claim) -> bool:
    """Take a send slot on the row's sender number, or give the claim back.

    Waits at most SENDER_SLOT_MAX_WAIT_SECONDS. Without one, the row goes
    back to the state it was claimed from with a due time a little after the
    next free slot, and a task is queued for then (the sweep is the safety
    net), so no worker sleeps through a backlog. False when it went back.
    """
    notification = claim.notification
    if notification.channel != Channel.SMS:
        return True
    if not (sms_configured() and notification.sender):
        return True  # only logged, nothing reaches Twilio
    try:
        rate_limit_acquire(
            sender_rate_limiter(),
            key=notification.sender,
            max_wait=SENDER_SLOT_MAX_WAIT_SECONDS,
        )
    except (RateLimitBusy, RateLimitBlocked) as exc:
        delay = exc.retry_after + random.uniform(0, SENDER_RETRY_SPREAD_SECONDS)
        attempts = notification.attempts - 1
        state = State.PENDING if claim.claimed_from == State.PENDING else State.FAILED
        recorded = _record(
            notification,
            state=state,
            attempts=attempts,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
        )
        if recorded:
            from .tasks import notification_send

            notification_send.apply_async((notification.pk,), countdown=delay)
            logger.info(
                "outbox: notification id=%s waits %.1fs for a slot on its sender",
                notification.pk,
                delay,
            )
        return False
    return True


def _sent_before(
    notification: Notification, *, since: datetime, exclude: frozenset[str]
) -> SmsResult | None:
    """The provider's record of a message an earlier attempt may have sent.

    Only Twilio can be asked; if it cannot answer now, we send again rather
    than hold the message back.
    """
    if notification.channel != Channel.SMS:
        # Limitation: an email whose earlier attempt timed out or whose worker
        # was lost mid-send is sent again; we use no ESP look-up by
        # Message-ID.
        return None
    try:
        message_id = sms_find_sent(
            to=notification.recipient,
            body=notification.body,
            from_number=notification.sender,
            since=since,
            exclude=exclude,
        )
    except TransientProviderError as exc:
        logger.warning(
            "outbox: notification id=%s could not check Twilio for an earlier "
            "send (code=%s); sending again",
            notification.pk,
            exc.code,
        )
        return None
    if message_id is None:
        return None
    logger.info(
        "outbox: notification id=%s was taken by Twilio on an earlier attempt; "
        "provider_id=%s, not sent again",
        notification.pk,
        message_id,
    )
    return SmsResult(message_id=message_id)


def _suppressed(notification: Notification) -> bool:
    """A bounce stops all email to an address; an SMS opt-out, one sender.

    An SMS suppression with no sender applies to every sender number.
    """
    if notification.channel == Channel.EMAIL:
        return Suppression.objects.filter(
            channel=Channel.EMAIL, address__iexact=notification.recipient, sender=""
        ).exists()
    return Suppression.objects.filter(
        channel=Channel.SMS,
        address=notification.recipient,
        sender__in=[notification.sender, ""],
    ).exists()


def _send(notification: Notification):
    if notification.channel == Channel.SMS:
        return sms_send(
            to=notification.recipient,
            body=notification.body,
            from_number=notification.sender,
            notification_id=notification.pk,
        )
    return email_send(
        to=notification.recipient,
        subject=notification.subject,
        body=notification.body,
        from_email=notification.sender,
        headers=notification.headers,
    )


def _record_failure(notification: Notification, exc: ProviderError) -> None:
    if notification.attempts >= MAX_ATTEMPTS:
        _record_undeliverable(
            notification,
            PermanentProviderError(
                f"gave up after {notification.attempts} attempts: {exc.message}",
                code=exc.code,
            ),
        )
        return
    retry_at = timezone.now() + retry_delay(attempts=notification.attempts)
    recorded = _record(
        notification,
        state=State.FAILED,
        last_error=exc.message,
        last_error_code=exc.code,
        next_attempt_at=retry_at,
    )
    if not recorded:
        return
    logger.warning(
        "outbox: notification id=%s failed channel=%s code=%s attempt=%s retry_at=%s",
        notification.pk,
        notification.channel,
        exc.code,
        notification.attempts,
        retry_at.isoformat(),
    )


def _record_undeliverable(notification: Notification, exc: ProviderError) -> None:
    with transaction.atomic():
        recorded = _record(
            notification,
            state=State.UNDELIVERABLE,
            last_error=exc.message,
            last_error_code=exc.code,
            next_attempt_at=None,
        )
        if recorded and notification.channel == Channel.SMS and exc.code == OPTED_OUT:
            # The recipient texted STOP to this sender number; other numbers
            # of ours may still write to them.
            Suppression.objects.get_or_create(
                channel=Channel.SMS,
                address=notification.recipient,
                sender=notification.sender,
                defaults={"reason": f"Twilio {OPTED_OUT}: recipient opted out"},
            )
        if recorded:
            notification_fallback_owe(
                notification=notification,
                why=f"could not be delivered (Twilio error {exc.code})",
            )
    if not recorded:
        return
    logger.warning(
        "outbox: notification id=%s undeliverable channel=%s code=%s attempt=%s to=%s",
        notification.pk,
        notification.channel,
        exc.code,
        notification.attempts,
        _masked(notification),
    )


def _write_off(notification: Notification, *, code: str, error: str) -> None:
    """Undeliverable, from inside a claim that already holds the lock."""
    notification.state = State.UNDELIVERABLE
    notification.last_error = error
    notification.last_error_code = code
    notification.next_attempt_at = None
    notification.save(
        update_fields=["state", "last_error", "last_error_code", "next_attempt_at"]
    )
    logger.warning(
        "outbox: notification id=%s undeliverable code=%s attempt=%s",
        notification.pk,
        code,
        notification.attempts,
    )
    notification_fallback_owe(
        notification=notification, why="could not be sent after several tries"
    )


def _supersede_error(fallback_id: int) -> str:
    return f"not sent: its email fallback #{fallback_id} was owed first"


def _supersede(notification: Notification, *, fallback: Notification) -> None:
    """Write off an SMS its email replaces, inside the claim's lock."""
    notification.state = State.UNDELIVERABLE
    notification.last_error = _supersede_error(fallback.pk)
    notification.last_error_code = SUPERSEDED
    notification.next_attempt_at = None
    notification.save(
        update_fields=["state", "last_error", "last_error_code", "next_attempt_at"]
    )
    logger.warning(
        "outbox: notification id=%s not sent, superseded by its email fallback "
        "id=%s attempt=%s",
        notification.pk,
        fallback.pk,
        notification.attempts,
    )


def _record_superseded(notification: Notification, *, fallback_id: int) -> None:
    """Write off an SMS whose earlier attempt Twilio did not turn out to have."""
    recorded = _record(
        notification,
        state=State.UNDELIVERABLE,
        last_error=_supersede_error(fallback_id)
        + "; no earlier attempt found at Twilio",
        last_error_code=SUPERSEDED,
        next_attempt_at=None,
    )
    if recorded:
        logger.warning(
            "outbox: notification id=%s not sent again, superseded by its email "
            "fallback id=%s attempt=%s",
            notification.pk,
            fallback_id,
            notification.attempts,
        )


def _record(notification: Notification, **fields) -> bool:
    """Write an outcome on a row we still hold; False if we lost it.

    Only a row still "sending" is written: if our lease ran out and another
    worker finished the row meanwhile, its outcome stands.
    """
    updated = Notification.objects.filter(
        pk=notification.pk, state=State.SENDING
    ).update(**fields)
    if not updated:
        logger.warning(
            "outbox: notification id=%s changed hands before its outcome "
            "(%s) was recorded",
            notification.pk,
            fields.get("state"),
        )
        return False
    for name, value in fields.items():
        setattr(notification, name, value)
    return True


def _masked(notification: Notification) -> str:
    if notification.channel == Channel.SMS:
        return mask_phone(notification.recipient)
    return mask_email(notification.recipient)
