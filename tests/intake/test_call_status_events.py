"""Applying stored voice callbacks to calls: order, terminal states, summary."""

import logging
from datetime import timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl

import pytest
from django.utils import timezone

from accounts.models import OnCallContact
from intake.calls import (
    call_event_record,
    call_events_stuck_ids,
    call_status_event_store,
)
from intake.models import Call, WebhookEvent
from notifications.models import Notification
from tests.conftest import fixture_path

CALLER = "+16175550199"


def case(name: str, **changes: str) -> dict:
    body = fixture_path("webhooks", f"voice-status-{name}.form").read_text().strip()
    return {**dict(parse_qsl(body)), **changes}


def deliver(payload: dict) -> Call | None:
    """Store a callback as the webhook does, then process it as the task does."""
    event, _ = call_status_event_store(payload=payload)
    return call_event_record(webhook_event_id=event.pk)


def test_ringing_then_completed_completes_the_call_and_owes_one_summary(businesses):
    harbor = businesses["Harbor Plumbing & Heating"]

    deliver(case("ringing"))
    call = Call.objects.get()
    assert (call.status, call.last_sequence, call.business) == ("ringing", 1, harbor)
    assert not Notification.objects.exists()

    deliver(case("completed"))
    call.refresh_from_db()
    assert (call.status, call.last_sequence) == ("completed", 3)
    assert call.duration_seconds == 47
    assert call.caller_number == CALLER
    assert call.started_at < call.ended_at

    notification = Notification.objects.get()
    assert notification.channel == "sms"
    assert notification.reason == "call_summary"
    assert notification.state == Notification.State.PENDING
    assert notification.recipient == harbor.on_call_contacts.get().phone
    assert notification.sender == "+15005550006"


def test_the_summary_names_caller_local_time_duration_and_what_follows(businesses):
    """Started 03:01:20 UTC on Tue 8 Dec: 10:01 PM on Monday in New York."""
    for name in ("ringing", "completed"):
        # Delivered when Twilio sent them: a Timestamp ahead of its arrival
        # by more than clocks differ is not believed.
        payload = case(name)
        event, _ = call_status_event_store(payload=payload)
        WebhookEvent.objects.filter(pk=event.pk).update(
            received_at=parsedate_to_datetime(payload["Timestamp"])
        )
        call_event_record(webhook_event_id=event.pk)

    body = Notification.objects.get().body
    assert body.startswith("Harbor Plumbing & Heating: ")
    assert CALLER in body
    assert "Mon Dec 7, 10:01 PM EST" in body
    assert "47s" in body
    assert body.endswith("Summary to follow.")


def test_the_summary_carries_the_call_summary_when_there_is_one(businesses):
    deliver(case("ringing"))
    Call.objects.update(summary="Basement flooding, water shut off, call back.")

    deliver(case("completed"))

    body = Notification.objects.get().body
    assert body.endswith("Basement flooding, water shut off, call back.")
    assert "to follow" not in body


def test_a_long_summary_is_cut_to_stay_a_short_text(businesses):
    deliver(case("ringing"))
    Call.objects.update(summary="word " * 400)

    deliver(case("completed"))

    body = Notification.objects.get().body
    assert len(body) < 600
    assert body.endswith("…")


def test_completed_first_then_late_ringing_changes_nothing(businesses):
    deliver(case("completed"))
    before = Call.objects.values().get()

    deliver(case("ringing"))

    assert Call.objects.values().get() == before
    assert Call.objects.get().status == "completed"
    assert Notification.objects.count() == 1
    ringing = WebhookEvent.objects.get(event_id__endswith=":1")
    assert ringing.status == WebhookEvent.Status.IGNORED


def test_a_terminal_status_is_never_undone_even_by_a_later_sequence(businesses):
    deliver(case("completed"))

    deliver(case("ringing", CallStatus="in-progress", SequenceNumber="7"))

    call = Call.objects.get()
    assert (call.status, call.last_sequence) == ("completed", 3)


def test_a_lower_sequence_does_not_move_a_live_call(businesses):
    deliver(case("ringing", CallStatus="in-progress", SequenceNumber="2"))

    deliver(case("ringing"))

    assert Call.objects.get().status == "in-progress"


def test_the_same_event_processed_twice_changes_nothing_the_second_time(businesses):
    event, _ = call_status_event_store(payload=case("completed"))
    call_event_record(webhook_event_id=event.pk)

    assert call_event_record(webhook_event_id=event.pk) is None
    assert Notification.objects.count() == 1
    event.refresh_from_db()
    assert event.attempts == 1


def test_a_call_to_an_unknown_number_is_recorded_without_business(businesses, caplog):
    caplog.set_level(logging.INFO)

    deliver(case("completed", To="+19995550100"))

    call = Call.objects.get()
    assert call.business is None
    assert call.dialled_number == "+19995550100"
    assert call.status == "completed"
    assert not Notification.objects.exclude(reason=Notification.Reason.OPS_ALERT)
    warning = [r for r in caplog.records if "unknown number" in r.getMessage()]
    assert warning
    assert not [r for r in caplog.records if "+19995550100" in r.getMessage()]


def test_the_summary_goes_to_the_first_on_call_contact_with_a_phone(businesses):
    harbor = businesses["Harbor Plumbing & Heating"]
    OnCallContact.objects.filter(business=harbor).update(order=5)
    OnCallContact.objects.create(
        business=harbor, name="No phone", email="nophone@example.test", order=0
    )
    OnCallContact.objects.create(
        business=harbor, name="Second", phone="+16175550188", order=1
    )

    deliver(case("completed"))

    assert Notification.objects.get().recipient == "+16175550188"


def test_nobody_on_call_means_no_summary_and_a_warning(businesses, caplog):
    harbor = businesses["Harbor Plumbing & Heating"]
    OnCallContact.objects.filter(business=harbor).update(phone="", email="")

    deliver(case("completed"))

    assert Call.objects.get().status == "completed"
    assert not Notification.objects.exclude(reason=Notification.Reason.OPS_ALERT)
    assert any("nobody on call" in r.getMessage() for r in caplog.records)


def test_an_unreadable_callback_is_kept_as_failed_with_its_reason(businesses):
    event, _ = call_status_event_store(payload=case("ringing", CallStatus="exploded"))

    call_event_record(webhook_event_id=event.pk)

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED
    assert "exploded" in event.last_error
    assert not Call.objects.exists()


def test_the_processing_logs_no_phone_number(businesses, caplog):
    caplog.set_level(logging.DEBUG)

    deliver(case("ringing"))
    deliver(case("completed"))
    deliver(case("completed", To="+19995550100", CallSid="CA" + "2" * 32))

    text = "\n".join(r.getMessage() for r in caplog.records)
    for number in (CALLER, "+16175550142", "+16175550177", "+19995550100"):
        assert number not in text


def test_a_callback_whose_task_was_lost_is_found_by_the_sweep(businesses):
    stale, _ = call_status_event_store(payload=case("ringing"))
    fresh, _ = call_status_event_store(payload=case("completed"))
    WebhookEvent.objects.filter(pk=stale.pk).update(
        received_at=timezone.now() - timedelta(minutes=10)
    )

    assert call_events_stuck_ids() == [stale.pk]
    call_event_record(webhook_event_id=stale.pk)
    assert call_events_stuck_ids() == []


def test_a_callback_that_keeps_failing_is_set_aside_after_its_attempts(
    businesses, monkeypatch
):
    """A bug, not a readable fault: tried a few times, then kept as failed."""
    from intake import calls

    def broken(**kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(calls, "call_upsert_from_status", broken)
    event, _ = call_status_event_store(payload=case("completed"))

    for _ in range(calls.MAX_EVENT_ATTEMPTS):
        with pytest.raises(RuntimeError):
            call_event_record(webhook_event_id=event.pk)
    assert call_event_record(webhook_event_id=event.pk) is None

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED
    assert event.attempts == calls.MAX_EVENT_ATTEMPTS
    assert "gave up" in event.last_error
    assert call_events_stuck_ids(now=timezone.now() + timedelta(hours=1)) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"SequenceNumber": "three"},
        {"CallDuration": "-5"},
        {"SequenceNumber": str(2**40)},
        {"CallSid": ""},
        {"CallSid": "CA" + "f" * 500},
    ],
)
def test_a_callback_with_impossible_values_is_set_aside_not_applied(
    businesses, changes
):
    event = WebhookEvent.objects.create(
        provider="twilio",
        kind="voice_status",
        event_id="odd",
        payload=case("completed", **changes),
    )

    call_event_record(webhook_event_id=event.pk)

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED
    assert event.last_error
    assert not Call.objects.exists()


def test_a_repeated_parameter_is_read_as_its_first_value(businesses):
    deliver({**case("completed"), "CallStatus": ["completed", "ringing"]})

    assert Call.objects.get().status == "completed"
