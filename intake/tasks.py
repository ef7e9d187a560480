"""Celery tasks of the intake app: thin, each calls one service."""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from .airtable import calls_airtable_sweep
from .models import InboundEmail
from .services import inbound_email_process
from .sms_status import DeliveryReportUnmatched

# Processing one stored webhook event: a database blip is retried for a few
# minutes; past that the beat sweep queues the event again.
webhook_event_task = shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=8,
)


@shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
def inbound_email_process_task(inbound_email_id: int) -> None:
    """Turn one stored inbound email into a ticket (or a reply, or nothing)."""
    if not InboundEmail.objects.filter(pk=inbound_email_id).exists():
        return
    inbound_email_process(inbound_email_id=inbound_email_id)


@shared_task(acks_late=True, ignore_result=True)
def airtable_sweep() -> None:
    """Beat, every 10 s: push the calls whose Airtable sync is due."""
    calls_airtable_sweep()


# --- Calls: voice callbacks and the Airtable sync they cause ---------------


@webhook_event_task
def call_event_process(webhook_event_id: int) -> None:
    """Apply one stored Twilio voice callback to its call (intake.calls)."""
    from .calls import call_event_record

    call_event_record(webhook_event_id=webhook_event_id)


@shared_task(acks_late=True, ignore_result=True)
def call_events_sweep() -> None:
    """Beat: queue again the voice callbacks whose task was lost."""
    from .calls import call_events_stuck_ids

    for webhook_event_id in call_events_stuck_ids():
        call_event_process.delay(webhook_event_id)


@shared_task(acks_late=True, ignore_result=True)
def call_airtable_sync(call_id: int) -> None:
    """Upsert one call's Airtable record (intake.airtable records failures)."""
    from .airtable import call_airtable_push
    from .models import Call

    if not Call.objects.filter(pk=call_id).exists():
        return
    call_airtable_push(call_id=call_id)


# --- SMS delivery reports and end-of-call summaries -------------------------


@shared_task(
    acks_late=True,
    ignore_result=True,
    # A report can beat the worker that records its message id.
    autoretry_for=(OperationalError, InterfaceError, DeliveryReportUnmatched),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=6,
)
def sms_status_process(webhook_event_id: int) -> None:
    """Apply one stored SMS status callback to its notification."""
    from .sms_status import sms_status_event_record

    sms_status_event_record(webhook_event_id=webhook_event_id)


@webhook_event_task
def call_summary_process(webhook_event_id: int) -> None:
    """Fill one call's summary from its stored end-of-call report."""
    from .call_summary import call_summary_record

    call_summary_record(webhook_event_id=webhook_event_id)


@shared_task(acks_late=True, ignore_result=True)
def report_events_sweep() -> None:
    """Beat: queue again the SMS status callbacks and call summaries whose
    task was lost."""
    from .call_summary import call_summary_events_stuck_ids
    from .sms_status import sms_status_events_stuck_ids

    for webhook_event_id in sms_status_events_stuck_ids():
        sms_status_process.delay(webhook_event_id)
    for webhook_event_id in call_summary_events_stuck_ids():
        call_summary_process.delay(webhook_event_id)
