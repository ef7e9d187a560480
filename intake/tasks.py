"""Celery tasks of the intake app: thin, each calls one service."""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from .airtable import calls_airtable_sweep
from .models import InboundEmail
from .services import inbound_email_process


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
