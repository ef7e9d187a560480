"""Thin tasks over tickets: the SLA watch that beat runs every minute."""

from celery import shared_task
from django.db import InterfaceError, OperationalError

# Only the database blipping is retried; the next minute's sweep takes
# whatever this one left, since the due times live in the database.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


@shared_task(
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=3,
)
def sla_sweep() -> int:
    """Remind and escalate every due time owed up to now (tickets.sla_watch)."""
    from .sla_watch import sla_sweep as sweep

    return sweep().total
