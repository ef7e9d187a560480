"""The webhook inbox: store a provider's event once, before anything else."""

from django.db import connection
from django.utils import timezone

from .models import WebhookEvent


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
