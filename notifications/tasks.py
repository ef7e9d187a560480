"""Thin tasks over the outbox: send one row, sweep for rows owed again."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

# Only the database blipping is retried here. Provider failures are recorded
# on the row with their own due time and picked up by `outbox_sweep`, so a
# retry survives a worker or broker restart.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


@shared_task(
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=5,
)
def notification_send(notification_id: int) -> None:
    """Send one outbox row if it is still owed (see notifications.delivery)."""
    from .delivery import notification_deliver

    notification_deliver(notification_id=notification_id)


@shared_task(acks_late=True)
def outbox_sweep() -> int:
    """Queue again every outbox row that is due or stuck; beat runs it often.

    Queuing a row twice is harmless: the claim under a row lock lets one
    task send it and the other return.
    """
    from .delivery import outbox_due_ids

    ids = outbox_due_ids()
    for notification_id in ids:
        notification_send.delay(notification_id)
    if ids:
        logger.info("outbox: sweep queued %d notifications again", len(ids))
    return len(ids)


@shared_task(acks_late=True, ignore_result=True)
def sms_fallback_sweep() -> int:
    """Beat: owe the email fallback of every SMS past its delivery deadline."""
    from .fallback import sms_fallback_sweep as sweep

    return sweep()
