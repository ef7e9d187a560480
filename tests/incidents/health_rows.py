"""Rows the health tests write, at the times they say (auto_now set aside)."""

import datetime as dt
import itertools

from intake.models import Call, WebhookEvent
from notifications.models import Notification

_seq = itertools.count()


def voice_callback(
    received_at: dt.datetime, status: str = WebhookEvent.Status.PROCESSED
) -> WebhookEvent:
    event = WebhookEvent.objects.create(
        provider="twilio",
        kind="voice_status",
        event_id=f"CA{next(_seq):032x}:status-completed",
        payload={"CallStatus": "completed"},
        status=status,
    )
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=received_at)
    return event


def owed(
    *,
    channel: str,
    created_at: dt.datetime,
    state: str = Notification.State.PENDING,
    **fields,
) -> Notification:
    recipient = "+16175550177" if channel == "sms" else "dana@harborplumbing.example"
    notification = Notification.objects.create(
        channel=channel,
        reason=Notification.Reason.CALL_SUMMARY,
        recipient=recipient,
        body="Harbor Plumbing: call from +16175550199",
        dedupe_key=f"test:{next(_seq)}",
        state=state,
        **fields,
    )
    Notification.objects.filter(pk=notification.pk).update(created_at=created_at)
    notification.refresh_from_db()
    return notification


def call_changed_at(call: Call, moment: dt.datetime, **fields) -> None:
    Call.objects.filter(pk=call.pk).update(updated_at=moment, **fields)
