"""End-of-call reports: the call gets its summary, on-call gets it by SMS once.

The report and the call's status callbacks come in either order. Until both
are in, the SMS is held (CALL_SUMMARY_WAIT_SECONDS) so that one SMS carries
the summary; past the wait it goes with what there is.
"""

import json
import time
from datetime import timedelta
from unittest import mock
from urllib.parse import parse_qsl

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from intake.call_summary import call_summary_record, call_summary_store
from intake.calls import call_event_record, call_status_event_store
from intake.models import Call, WebhookEvent
from notifications.delivery import outbox_due_ids
from notifications.models import Notification
from standins.twilio import TwilioStandIn
from tests.conftest import fixture_path
from tests.intake.test_call_summary_webhook import sign
from tests.intake.test_voice_webhook import post_case

State = Notification.State
CALL_ID = "CA11111111111111111111111111111111"
SUMMARY = "Basement flooding, water shut off, wants a callback tonight."
WAIT = {"CALL_SUMMARY_WAIT_SECONDS": 60}


def voice(name: str) -> Call | None:
    """One of the shared voice cases, stored and processed like the webhook."""
    body = fixture_path("webhooks", f"voice-status-{name}.form").read_text().strip()
    event, _ = call_status_event_store(payload=dict(parse_qsl(body)))
    return call_event_record(webhook_event_id=event.pk)


def summary_report(**fields) -> Call | None:
    """An end-of-call report, stored and processed like the webhook."""
    payload = {"call_id": CALL_ID, "summary": SUMMARY, "urgency": "High", **fields}
    event, _ = call_summary_store(payload=payload)
    return call_summary_record(webhook_event_id=event.pk)


def summary_sms() -> list[Notification]:
    return list(
        Notification.objects.filter(channel="sms", reason="call_summary").order_by("pk")
    )


# --- The report after the status callback -------------------------------------


@pytest.mark.django_db
@override_settings(**WAIT)
def test_a_completed_call_holds_its_sms_and_the_summary_releases_it(businesses):
    before = timezone.now()
    voice("completed")
    [held] = summary_sms()
    assert held.state == State.PENDING
    assert held.body.endswith("Summary to follow.")
    assert before + timedelta(seconds=59) < held.next_attempt_at
    assert held.pk not in outbox_due_ids()

    call = summary_report()

    [sms] = summary_sms()
    assert sms.pk == held.pk
    assert sms.next_attempt_at is None
    assert sms.body.endswith(SUMMARY)
    assert "47s" in sms.body
    assert (call.summary, call.urgency) == (SUMMARY, "high")


@pytest.mark.django_db
@override_settings(**WAIT)
def test_without_a_report_the_held_sms_goes_when_the_wait_ends(businesses):
    voice("completed")
    [held] = summary_sms()

    assert outbox_due_ids(now=held.next_attempt_at - timedelta(seconds=1)) == []
    assert outbox_due_ids(now=held.next_attempt_at) == [held.pk]
    assert held.body.endswith("Summary to follow.")


@pytest.mark.django_db
@override_settings(**WAIT, CALL_SUMMARY_WEBHOOK_SECRET="")
def test_with_no_summary_webhook_nothing_waits(businesses):
    """No secret, no report can arrive: the SMS goes on completion."""
    voice("completed")

    [sms] = summary_sms()
    assert sms.next_attempt_at is None


@pytest.mark.django_db
def test_a_summary_after_the_sms_left_goes_in_one_follow_up(businesses):
    """No wait configured: "Summary to follow", then the summary, once."""
    voice("completed")
    [first] = summary_sms()
    Notification.objects.filter(pk=first.pk).update(
        state=State.SENT, attempts=1, provider_message_id="SM1"
    )

    summary_report()
    summary_report()  # the inbox keeps one report per call

    first_again, follow_up = summary_sms()
    assert first_again.body.endswith("Summary to follow.")
    assert follow_up.body.endswith(SUMMARY)
    assert follow_up.recipient == first.recipient
    assert follow_up.call == first.call
    assert WebhookEvent.objects.filter(kind="call_summary").count() == 1


@pytest.mark.django_db
def test_a_summary_before_the_sms_left_is_written_into_it(businesses):
    voice("completed")

    summary_report()

    [sms] = summary_sms()
    assert sms.state == State.PENDING
    assert sms.body.endswith(SUMMARY)


# --- The report before the status callback ---------------------------------------


@pytest.mark.django_db
def test_a_report_first_creates_the_call_and_the_callbacks_complete_it(businesses):
    harbor = businesses["Harbor Plumbing & Heating"]

    call = summary_report(
        caller="+16175550199",
        started_at="2026-12-08T03:01:20+00:00",
        ended_at="2026-12-08T03:02:11Z",
    )
    assert call.status == Call.Status.QUEUED
    assert call.business is None
    assert call.summary == SUMMARY
    assert summary_sms() == []

    voice("ringing")
    voice("completed")

    call.refresh_from_db()
    assert (call.status, call.business, call.duration_seconds) == (
        "completed",
        harbor,
        47,
    )
    assert call.dialled_number == "+16175550142"
    [sms] = summary_sms()
    assert sms.next_attempt_at is None
    assert sms.body.endswith(SUMMARY)
    assert "Mon Dec 7, 10:01 PM EST" in sms.body
    assert Call.objects.count() == 1


@pytest.mark.django_db
@override_settings(**WAIT)
def test_a_report_naming_the_line_holds_the_sms_until_completion(businesses):
    harbor = businesses["Harbor Plumbing & Heating"]

    call = summary_report(to="(617) 555-0142")

    assert call.business == harbor
    [held] = summary_sms()
    assert held.next_attempt_at > timezone.now()
    assert held.body.endswith(SUMMARY)
    assert "duration unknown" in held.body

    voice("completed")

    [sms] = summary_sms()
    assert sms.next_attempt_at is None
    assert "47s" in sms.body
    assert sms.body.endswith(SUMMARY)


@pytest.mark.django_db
def test_a_report_refreshes_the_airtable_record(
    businesses, django_capture_on_commit_callbacks
):
    voice("completed")
    Call.objects.update(airtable_state=Call.SyncState.SYNCED)

    with (
        mock.patch("intake.tasks.call_summary_process.delay"),
        mock.patch("intake.tasks.call_airtable_sync.delay") as airtable_sync,
        mock.patch("notifications.tasks.notification_send.delay") as send,
        django_capture_on_commit_callbacks(execute=True),
    ):
        call = summary_report()

    call.refresh_from_db()
    assert call.airtable_state == Call.SyncState.PENDING
    assert call.airtable_next_attempt_at is None, "due at once"
    assert airtable_sync.call_args_list == [mock.call(call.pk)]
    assert send.call_args_list == [mock.call(summary_sms()[0].pk)]


# --- Fields as the provider writes them --------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "written,e164,extension",
    [
        ("(415) 555-0142 x22", "+14155550142", "22"),
        ("415.555.0177 ext. 5", "+14155550177", "5"),
        ("+1 415 555 0142;ext=22", "+14155550142", "22"),
    ],
)
def test_a_caller_with_an_extension_is_e164_with_the_extension_apart(
    businesses, written, e164, extension
):
    """Shared fault 7: the number is E.164 and the extension reaches on-call."""
    call = summary_report(caller=written, to="+16175550142")

    assert call.caller_number == e164
    assert call.summary == f"{SUMMARY} Call back: {e164} ext. {extension}."
    [sms] = summary_sms()
    assert f"call from {e164} " in sms.body
    assert sms.body.endswith(f"Call back: {e164} ext. {extension}.")


@pytest.mark.django_db
def test_a_callback_number_other_than_the_line_that_called_is_kept(businesses):
    voice("completed")

    call = summary_report(caller="+14155550177")

    assert call.caller_number == "+16175550199"
    assert call.summary.endswith("Call back: +14155550177.")


@pytest.mark.django_db
def test_times_without_a_zone_and_unreadable_fields_are_left_out(businesses):
    call = summary_report(
        started_at="2026-12-08 03:01:20",
        ended_at="yesterday",
        caller="not a number",
        urgency=None,
    )

    assert (call.started_at, call.ended_at) == (None, None)
    assert call.caller_number == ""
    assert call.urgency == ""
    assert call.summary == SUMMARY


# --- Through a real worker, to the Twilio stand-in --------------------------------


def test_one_sms_carries_the_summary_through_the_worker(businesses, celery_worker):
    """Completed (twice), then the signed report, then a late ringing: one SMS
    at Twilio, with the summary in it."""
    harbor = businesses["Harbor Plumbing & Heating"]
    on_call = harbor.on_call_contacts.get()
    with (
        TwilioStandIn() as twilio,
        override_settings(TWILIO_API_BASE_URL=twilio.url, **WAIT),
    ):
        assert post_case(Client(), "completed").status_code == 200
        assert post_case(Client(), "completed").status_code == 200
        wait_for(lambda: Notification.objects.exists())
        time.sleep(0.5)
        assert twilio.messages == []  # held for the report

        body = json.dumps({"call_id": CALL_ID, "summary": SUMMARY}).encode()
        response = Client().post(
            "/webhooks/calls/summary/",
            data=body,
            content_type="application/json",
            HTTP_X_AFTERHOURS_SIGNATURE=sign(body, t=int(time.time())),
        )
        assert response.status_code == 200
        wait_for(lambda: Notification.objects.filter(state=State.SENT).exists())

        assert post_case(Client(), "ringing").status_code == 200
        wait_for(
            lambda: (
                not WebhookEvent.objects.filter(
                    status=WebhookEvent.Status.PENDING
                ).exists()
            )
        )

    [message] = twilio.messages
    assert message["to"] == on_call.phone
    assert message["body"].endswith(SUMMARY)
    assert "47s" in message["body"]
    assert Notification.objects.count() == 1
    assert Call.objects.get().summary == SUMMARY


def wait_for(condition, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not finish in time")
        time.sleep(0.1)
