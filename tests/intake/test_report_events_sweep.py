"""Stored SMS status callbacks and call summaries whose task was lost are
queued again by the beat sweep; fresh and finished ones are left alone."""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from intake.call_summary import call_summary_store
from intake.models import WebhookEvent
from intake.sms_status import sms_status_event_store
from intake.tasks import report_events_sweep
from tests.notifications.twilio_reports import status_params


def aged(event: WebhookEvent, minutes: int) -> WebhookEvent:
    WebhookEvent.objects.filter(pk=event.pk).update(
        received_at=timezone.now() - timedelta(minutes=minutes)
    )
    return event


@pytest.mark.django_db
def test_the_sweep_queues_lost_reports_and_summaries_again():
    lost_status, _ = sms_status_event_store(
        payload=status_params(sid="SMlost", status="delivered")
    )
    fresh_status, _ = sms_status_event_store(
        payload=status_params(sid="SMfresh", status="delivered")
    )
    done_status, _ = sms_status_event_store(
        payload=status_params(sid="SMdone", status="delivered")
    )
    lost_summary, _ = call_summary_store(payload={"call_id": "CAlost"})
    fresh_summary, _ = call_summary_store(payload={"call_id": "CAfresh"})
    aged(lost_status, 5)
    aged(done_status, 5)
    aged(lost_summary, 5)
    WebhookEvent.objects.filter(pk=done_status.pk).update(
        status=WebhookEvent.Status.PROCESSED
    )

    with (
        mock.patch("intake.tasks.sms_status_process.delay") as status_task,
        mock.patch("intake.tasks.call_summary_process.delay") as summary_task,
    ):
        report_events_sweep()

    assert status_task.call_args_list == [mock.call(lost_status.pk)]
    assert summary_task.call_args_list == [mock.call(lost_summary.pk)]
