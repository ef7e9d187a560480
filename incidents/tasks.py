"""Thin tasks of the incidents app: the incident clock, late cluster joins,
the heartbeat and the health sweep."""

import datetime as dt
import logging

from celery import shared_task
from celery.signals import beat_embedded_init, beat_init, before_task_publish
from django.db import InterfaceError, OperationalError
from django.utils import timezone

logger = logging.getLogger(__name__)

# Only the database blipping is retried; the clock's own state (one alert
# row per due time) makes a repeated run harmless.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)
# A beat sweep: retried a little on those, and the next run is a minute away.
sweep_task = shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=3,
)


@sweep_task
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


# --- Health ------------------------------------------------------------------

# The heartbeat message carries the moment beat sent it in this header (set
# by `_stamp_heartbeat` in the beat process only), so the worker that runs
# it can record both: beat by that moment, itself by now.
BEAT_SENT_AT_HEADER = "afterhours_beat_sent_at"
HEARTBEAT_TASK = "incidents.tasks.heartbeat"
_in_beat = False


@beat_init.connect
@beat_embedded_init.connect
def _mark_beat(**kwargs) -> None:
    global _in_beat
    _in_beat = True


@before_task_publish.connect
def _stamp_heartbeat(sender=None, headers=None, **kwargs) -> None:
    """In beat, stamp each heartbeat with the moment it is sent."""
    if sender == HEARTBEAT_TASK and _in_beat and headers is not None:
        headers[BEAT_SENT_AT_HEADER] = timezone.now().isoformat()


@shared_task(bind=True, ignore_result=True)
def heartbeat(self) -> None:
    """Beat, every 30 s: beat and a worker prove they are alive.

    Not retried: the next one is 30 s away, and a missing beat is the news.
    """
    from .health import heartbeat_record

    sent = self.request.get(BEAT_SENT_AT_HEADER)
    try:
        beat_sent_at = dt.datetime.fromisoformat(sent) if sent else None
    except (TypeError, ValueError):
        logger.warning("heartbeat %s: unreadable sent time %r", self.request.id, sent)
        beat_sent_at = None
    heartbeat_record(beat_sent_at=beat_sent_at)


@sweep_task
def health_check_sweep() -> str:
    """Beat, every minute: the five checks; a P0 when the pipeline is quiet."""
    from .health import health_sweep

    return health_sweep().status
