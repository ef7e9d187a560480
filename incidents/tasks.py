"""Thin tasks of the incidents app: the incident clock, late cluster joins,
the heartbeat and the health sweep."""

import datetime as dt
import logging

from celery import shared_task
from celery.signals import beat_embedded_init, beat_init, before_task_publish
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
)
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

# Beat records itself as it sends the heartbeat (`_stamp_heartbeat`, beat
# process only), so a stopped worker does not make beat look dead. The
# message also carries that moment in this header, so the worker that runs
# it records beat too (never backwards) should beat's own write have failed.
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
    """In beat, record beat alive and stamp each heartbeat with the moment
    it is sent. Beat has the database (django_celery_beat); a failed write
    is logged and the heartbeat still goes out."""
    if sender != HEARTBEAT_TASK or not _in_beat:
        return
    from .health import heartbeat_beat_record

    now = timezone.now()
    if headers is not None:
        headers[BEAT_SENT_AT_HEADER] = now.isoformat()
    try:
        heartbeat_beat_record(now=now)
    except DatabaseError:
        logger.warning("heartbeat: beat could not record itself", exc_info=True)
        # A broken connection is dropped, not kept for beat's next query.
        close_old_connections()


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
