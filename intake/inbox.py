"""The webhook inbox: store a provider's event once, before anything else."""

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from afterhours.privacy import mask_text

from .models import WebhookEvent

logger = logging.getLogger(__name__)


def webhook_event_insert(
    *, provider: str, kind: str, event_id: str, payload: dict
) -> WebhookEvent | None:
    """Store one event; None when (provider, event_id) is already stored.

    One statement in autocommit, with no exception on a duplicate: the
    webhook is the hottest path we have and a provider retry is normal, so
    neither pays for a transaction or a rolled-back savepoint.

    Text PostgreSQL cannot hold (NUL, lone surrogates) is replaced with
    U+FFFD: a signed event is kept as near to what was sent as the database
    allows rather than refused, since its sender would only send it again.
    """
    clean_payload = storable(payload)
    clean_event_id = storable(event_id)
    if clean_payload != payload or clean_event_id != event_id:
        logger.warning(
            "inbox: %s %s event=%s carried text the database cannot hold; "
            "stored with U+FFFD in its place",
            provider,
            kind,
            clean_event_id,
        )
        payload, event_id = clean_payload, clean_event_id
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


def storable(value: Any) -> Any:
    """`value` with every string fit for PostgreSQL text and jsonb."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate: through UTF-16, where it decodes as U+FFFD.
            value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


def webhook_event_alert(*, event: WebhookEvent, what: str) -> None:
    """Tell operations of an event set aside unprocessed; once an hour a kind.

    Call inside the transaction that set it aside. What it described (a
    call's status, a delivery report) may be missing or out of date until
    somebody looks at it in admin.
    """
    from notifications.services import ops_alert_owe

    path = reverse("admin:intake_webhookevent_change", args=[event.pk])
    ops_alert_owe(
        topic=f"webhook-set-aside:{event.provider}:{event.kind}",
        subject=f"A {event.provider} {event.kind} webhook was set aside ({what})",
        body=(
            f"Webhook event {event.event_id} ({event.provider} {event.kind}, "
            f"inbox id {event.pk}) was set aside unprocessed: {what}: "
            f"{mask_text(event.last_error)}. What it describes may be missing "
            f"or out of date here. It is kept whole in admin: "
            f"{settings.PUBLIC_BASE_URL.rstrip('/')}{path} . Further events of "
            "this kind set aside within the hour are not alerted again; the "
            "webhook event list, filtered on failed, shows them all."
        ),
    )


def webhook_events_stuck_ids(
    *,
    provider: str,
    kind: str,
    older_than: timedelta,
    now: datetime | None = None,
    limit: int = 500,
) -> list[int]:
    """Events of one kind still pending `older_than` after they were stored:
    their task was lost (the broker down at commit time, a worker killed),
    and a beat sweep queues them again. Oldest first."""
    now = now or timezone.now()
    return list(
        WebhookEvent.objects.filter(
            provider=provider,
            kind=kind,
            status=WebhookEvent.Status.PENDING,
            received_at__lte=now - older_than,
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
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
            webhook_event_alert(event=event, what="gave up")
            return False
        event.attempts += 1
        event.save(update_fields=["attempts"])
    return True
