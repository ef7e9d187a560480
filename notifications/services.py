"""Writes on the outbox. Sending itself lives in `notifications.delivery`."""

import logging

from django.db import IntegrityError, transaction

from .models import Notification

logger = logging.getLogger(__name__)


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
) -> tuple[Notification, bool]:
    """Owe one message; send it once the caller's transaction commits.

    Call inside the transaction that records the cause. Idempotent on
    `dedupe_key`: the same key returns the existing row and queues nothing,
    so a replayed cause never owes a second message. Returns (row, created).
    """
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
            )
    except IntegrityError:
        return Notification.objects.get(dedupe_key=dedupe_key), False

    from .tasks import notification_send

    transaction.on_commit(lambda: notification_send.delay(notification.pk))
    logger.info(
        "outbox: queued notification id=%s channel=%s reason=%s",
        notification.pk,
        channel,
        reason,
    )
    return notification, True
