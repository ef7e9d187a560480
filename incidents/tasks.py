"""Thin tasks of the incidents app: the incident clock, late cluster joins."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

# Only the database blipping is retried; the clock's own state (one alert
# row per due time) makes a repeated run harmless.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


@shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=3,
)
def incident_clock_sweep() -> int:
    """Beat, every minute: remind before an update is due, escalate when late."""
    from .services import incident_clock_check

    return len(incident_clock_check())


@shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=5,
)
def ticket_cluster_join(ticket_id: int, incident_id: int) -> None:
    """Join a ticket that was busy when its cluster was correlated."""
    from .correlation import ticket_cluster_join as join

    join(ticket_id=ticket_id, incident_id=incident_id)
