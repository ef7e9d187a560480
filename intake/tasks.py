"""Celery tasks of the intake app: thin, each calls one service."""

from celery import shared_task

from .airtable import calls_airtable_sweep


@shared_task(acks_late=True, ignore_result=True)
def airtable_sweep() -> None:
    """Beat, every 10 s: push the calls whose Airtable sync is due."""
    calls_airtable_sweep()
