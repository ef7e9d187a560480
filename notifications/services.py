"""Writes on the outbox. Sending itself lives in `notifications.delivery`."""

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from afterhours.privacy import mask_phone

from .models import Notification
from .providers.twilio_sms import sms_address

logger = logging.getLogger(__name__)

# One alert of a topic per channel in any hour.
OPS_ALERT_QUIET = timedelta(hours=1)

Channel = Notification.Channel
State = Notification.State


def notification_enqueue(
    *,
    channel: str,
    reason: str,
    recipient: str,
    body: str,
    dedupe_key: str,
    subject: str = "",
    sender: str = "",
    headers: dict | None = None,
    ticket=None,
    call=None,
    incident=None,
    fallback_of: Notification | None = None,
    send_after: datetime | None = None,
) -> tuple[Notification, bool]:
    """Owe one message; send it once the caller's transaction commits.

    Call inside the transaction that records the cause. Idempotent on
    `dedupe_key`: the same key returns the existing row and queues nothing,
    so a replayed cause never owes a second message. Returns (row, created).

    With `send_after`, the row is held until then (no task is queued; the
    outbox sweep sends it when the hold ends) unless `notification_rewrite`
    lets it go earlier. An SMS recipient is stored as E.164, without any
    extension, so the send, opt-outs and the fallback all see one number.
    """
    if channel == Channel.SMS:
        recipient = sms_address(recipient)
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                channel=channel,
                reason=reason,
                recipient=recipient,
                body=body,
                dedupe_key=dedupe_key,
                subject=subject,
                sender=sender,
                headers=headers or {},
                ticket=ticket,
                call=call,
                incident=incident,
                fallback_of=fallback_of,
                next_attempt_at=send_after,
            )
    except IntegrityError:
        return Notification.objects.get(dedupe_key=dedupe_key), False

    if send_after is None:
        _send_on_commit(notification.pk)
    logger.info(
        "outbox: queued notification id=%s channel=%s reason=%s held_until=%s",
        notification.pk,
        channel,
        reason,
        send_after.isoformat() if send_after else "-",
    )
    return notification, True


def notification_rewrite(
    *, notification_id: int, body: str, send_after: datetime | None = None
) -> bool:
    """Change the text of a message not yet handed to a provider.

    Takes a row lock (select_for_update); call inside a transaction. Only a
    row never claimed (pending, no attempt) can change: one a worker has
    taken may already be at the provider. The row is then held until
    `send_after`, or, with None, released to go out once the transaction
    commits. Returns False when the message has already gone (or is going).
    """
    notification = (
        Notification.objects.select_for_update().filter(pk=notification_id).first()
    )
    if notification is None or notification.state != State.PENDING:
        return False
    if notification.attempts:
        return False
    notification.body = body
    notification.next_attempt_at = send_after
    notification.save(update_fields=["body", "next_attempt_at"])
    if send_after is None:
        _send_on_commit(notification.pk)
    logger.info(
        "outbox: notification id=%s rewritten, held_until=%s",
        notification.pk,
        send_after.isoformat() if send_after else "-",
    )
    return True


def ops_alert_owe(
    *, topic: str, subject: str, body: str, now: datetime | None = None
) -> list[Notification]:
    """Tell operations (support on-call) by email and SMS, once in any hour a topic.

    Call inside the transaction that records the cause. A fault that hits
    many messages at once (carrier filtering on one sender) makes one alert
    per channel per hour, not one per message. Without SUPPORT_ONCALL_EMAIL
    and SUPPORT_ONCALL_PHONE the alert is only logged, as an error.
    """
    now = now or timezone.now()
    owed = []
    targets = (
        (Channel.EMAIL, settings.SUPPORT_ONCALL_EMAIL),
        (Channel.SMS, settings.SUPPORT_ONCALL_PHONE),
    )
    for channel, recipient in targets:
        if not recipient:
            continue
        # The key ends in the moment (UTC, sortable as text), so "one in the
        # last hour" is a range of keys: a rolling hour, not a clock hour.
        # Limitation: two workers alerting one topic in the same instant can
        # both find none and owe two.
        prefix = f"ops_alert:{topic}:{channel}:"
        stamp = f"{prefix}{_sortable(now)}"
        if Notification.objects.filter(
            dedupe_key__gt=f"{prefix}{_sortable(now - OPS_ALERT_QUIET)}",
            dedupe_key__lte=stamp,
        ).exists():
            continue
        notification, created = notification_enqueue(
            channel=channel,
            reason=Notification.Reason.OPS_ALERT,
            recipient=recipient,
            subject=subject if channel == Channel.EMAIL else "",
            body=body,
            headers={"Auto-Submitted": "auto-generated"}
            if channel == Channel.EMAIL
            else None,
            dedupe_key=stamp,
        )
        if created:
            owed.append(notification)
    if not (settings.SUPPORT_ONCALL_EMAIL or settings.SUPPORT_ONCALL_PHONE):
        logger.error(
            "ops alert %s: nobody to tell (no SUPPORT_ONCALL_EMAIL or "
            "SUPPORT_ONCALL_PHONE): %s",
            topic,
            subject,
        )
    elif owed:
        logger.warning(
            "ops alert %s owed to support on-call (%s): %s",
            topic,
            ", ".join(
                mask_phone(n.recipient) if n.channel == Channel.SMS else n.channel
                for n in owed
            ),
            subject,
        )
    return owed


def _sortable(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%f")


def _send_on_commit(notification_id: int) -> None:
    from .tasks import notification_send

    transaction.on_commit(lambda: notification_send.delay(notification_id))
