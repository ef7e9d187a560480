"""The webhook inbox: store a provider's event once, before anything else."""

import logging

from django.db import connection, transaction
from django.utils import timezone

from .models import WebhookEvent

logger = logging.getLogger(__name__)


def webhook_event_insert(
    *, provider: str, kind: str, event_id: str, payload: dict
) -> WebhookEvent | None:
    """Store one event; None when (provider, event_id) is already stored.

    One statement in autocommit, with no exception on a duplicate: the
    webhook is the hottest path we have and a provider retry is normal, so
    neither pays for a transaction or a rolled-back savepoint.
    """
    received_at = timezone.now()
    ops = connection.ops
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {WebhookEvent._meta.db_table} "
            "(provider, kind, event_id, payload, received_at, status, attempts, "
            "last_error) VALUES (%s, %s, %s, %s, %s, %s, 0, '') "
            "ON CONFLICT (provider, event_id) DO NOTHING RETURNING id",
            [
                provider,
                kind,
                event_id,
                ops.adapt_json_value(payload, None),
                ops.adapt_datetimefield_value(received_at),
                WebhookEvent.Status.PENDING,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return WebhookEvent(
        pk=row[0],
        provider=provider,
        kind=kind,
        event_id=event_id,
        payload=payload,
        received_at=received_at,
    )


def webhook_event_attempt_begin(*, webhook_event_id: int, max_attempts: int) -> bool:
    """Count one processing attempt of a stored event, under its row lock.

    False when there is nothing to do: the event is gone or already settled,
    or it has failed `max_attempts` times; then it is set aside as failed,
    with the reason shown in admin, instead of being swept up for ever.
    """
    with transaction.atomic():
        event = (
            WebhookEvent.objects.select_for_update().filter(pk=webhook_event_id).first()
        )
        if event is None or event.status != WebhookEvent.Status.PENDING:
            return False
        if event.attempts >= max_attempts:
            event.status = WebhookEvent.Status.FAILED
            event.last_error = (
                f"gave up after {event.attempts} attempts (see the worker log)"
            )
            event.processed_at = timezone.now()
            event.save(update_fields=["status", "last_error", "processed_at"])
            logger.error(
                "inbox: %s event=%s id=%s failed %s times, set aside",
                event.kind,
                event.event_id,
                event.pk,
                event.attempts,
            )
            return False
        event.attempts += 1
        event.save(update_fields=["attempts"])
    return True
