"""The runbook's five checks, each ok and failing on real rows.

Times are explicit: every check takes `now`, and the silence check counts
only time when at least one business is after hours, in its own zone.
"""

import dataclasses
import datetime as dt

import pytest
from django.utils import timezone

from incidents import health
from intake.models import Call, WebhookEvent
from notifications.models import Heartbeat, Notification
from tests.factories import BusinessFactory, CallFactory

from .health_rows import call_changed_at, owed, voice_callback

pytestmark = pytest.mark.django_db

UTC = dt.UTC
M = dt.timedelta(minutes=1)


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.fixture
def harbor(businesses):
    return businesses["Harbor Plumbing & Heating"]


@pytest.fixture
def a_call(harbor):
    """Calls have come before: silence is judged."""
    return CallFactory(business=harbor)


# --- 1. Call intake -----------------------------------------------------------


def test_intake_ok_when_callbacks_are_processed(harbor):
    now = timezone.now()
    voice_callback(now - M)
    CallFactory(business=harbor)

    answer = health.check_call_intake(now=now)

    assert answer.status == health.OK
    assert answer.figures["pending_callbacks"] == 0
    assert answer.figures["calls_last_hour"] == 1
    assert "1 calls recorded" in answer.answer


def test_intake_slow_then_failing_as_the_oldest_callback_waits(db):
    now = timezone.now()
    voice_callback(now - 3 * M, status=WebhookEvent.Status.PENDING)
    voice_callback(now - 30 * M, status=WebhookEvent.Status.PROCESSED)

    slow = health.check_call_intake(now=now)
    assert slow.status == health.WARN
    assert slow.answer.startswith("Slow: 1 voice callbacks waiting")

    failing = health.check_call_intake(now=now + 10 * M)
    assert failing.status == health.FAIL
    assert failing.figures["oldest_pending_minutes"] == 13
    assert failing.answer.startswith("Failing")


def test_intake_warns_while_calls_reach_numbers_no_business_owns(harbor):
    now = timezone.now()
    CallFactory(business=harbor)
    CallFactory(business=None, dialled_number="+19995550000")

    answer = health.check_call_intake(now=now)

    assert answer.status == health.WARN
    assert answer.figures["calls_to_no_business_last_hour"] == 1
    assert "1 calls in the last hour came in on numbers no business owns" in (
        answer.answer
    )
    assert "+1999" not in answer.answer


# --- 2. Webhooks arriving, silence after hours --------------------------------


def test_webhooks_ok_when_a_callback_came_recently(a_call):
    now = at(2025, 3, 11, 7, 0)  # Tuesday 03:00 in New York: after hours
    voice_callback(now - 5 * M)

    answer = health.check_webhooks(now=now)

    assert answer.status == health.OK
    assert answer.figures["minutes_since_voice_callback"] == 5
    assert answer.figures["businesses_closed_now"] == 6


def test_silence_after_hours_fails(a_call):
    now = at(2025, 3, 11, 7, 0)  # Tuesday 03:00 EDT
    voice_callback(now - 90 * M)

    answer = health.check_webhooks(now=now)

    assert answer.status == health.FAIL
    assert answer.figures["after_hours_quiet_minutes"] == 90
    assert answer.answer.startswith("Silence: no call webhook for 90 min")


def test_quiet_while_every_business_is_open_is_not_silence(a_call):
    # Tuesday 11:00-14:00 EDT: Los Angeles opens at 08:00 PDT (15:00 UTC),
    # Denver closes at 17:00 MDT (23:00 UTC); all six are open throughout.
    now = at(2025, 3, 11, 18, 0)
    voice_callback(at(2025, 3, 11, 15, 0))

    answer = health.check_webhooks(now=now)

    assert answer.status == health.OK
    assert answer.figures["minutes_since_voice_callback"] == 180
    assert answer.figures["after_hours_quiet_minutes"] == 0


def test_only_after_hours_minutes_count(a_call, settings):
    # 14:30 to 16:30 UTC: Bayview (Los Angeles) is closed until 15:00 UTC.
    now = at(2025, 3, 11, 16, 30)
    voice_callback(at(2025, 3, 11, 14, 30))

    answer = health.check_webhooks(now=now)
    assert answer.figures["after_hours_quiet_minutes"] == 30
    assert answer.status == health.OK

    settings.HEALTH_CALL_SILENCE_MINUTES = 30
    assert health.check_webhooks(now=now).status == health.FAIL


def test_silence_counts_real_minutes_over_spring_forward(a_call):
    # Sunday 9 March 2025: 01:45 EST to 03:30 EDT is 45 minutes, not 105.
    voice_callback(at(2025, 3, 9, 6, 45))

    answer = health.check_webhooks(now=at(2025, 3, 9, 7, 30))

    assert answer.figures["after_hours_quiet_minutes"] == 45
    assert answer.status == health.OK


def test_silence_counts_real_minutes_over_fall_back(a_call):
    # Sunday 2 November 2025: 01:30 EDT to 01:40 EST is 70 minutes, not 10.
    voice_callback(at(2025, 11, 2, 5, 30))

    answer = health.check_webhooks(now=at(2025, 11, 2, 6, 40))

    assert answer.figures["after_hours_quiet_minutes"] == 70
    assert answer.status == health.FAIL


def test_open_hours_follow_the_wall_clock_across_a_dst_change():
    """Saturday 8 March 2025 is EST, Sunday EDT: 08:00 in New York is 13:00
    UTC one day and 12:00 UTC the next."""
    weekend = BusinessFactory(time_zone="America/New_York", open_days=[5, 6])
    start, end = at(2025, 3, 8, 12, 0), at(2025, 3, 9, 14, 0)

    counted = health.after_hours_between(businesses=[weekend], start=start, end=end)

    # Closed Saturday 12:00-13:00 and 23:00 to Sunday 12:00 UTC.
    assert counted == dt.timedelta(hours=14)


def test_a_business_open_no_day_is_always_after_hours():
    closed = BusinessFactory(open_days=[])
    start = at(2025, 3, 11, 15, 0)  # Tuesday 11:00 EDT

    counted = health.after_hours_between(
        businesses=[closed], start=start, end=start + 30 * M
    )

    assert counted == 30 * M


def test_silence_is_not_judged_before_any_call(businesses):
    now = at(2025, 3, 11, 7, 0)

    answer = health.check_webhooks(now=now)

    assert answer.status == health.WARN
    assert "not judged" in answer.answer


def test_no_callback_in_the_whole_window_is_silence(a_call):
    answer = health.check_webhooks(now=at(2025, 3, 11, 7, 0))

    assert answer.status == health.FAIL
    assert "in the last 7 days" in answer.answer


# --- 3. Outbound notifications ------------------------------------------------


def test_notifications_ok_when_they_leave(db):
    now = timezone.now()
    owed(channel="sms", created_at=now - 2 * M, state=Notification.State.DELIVERED)
    owed(channel="sms", created_at=now - 30 * M, state=Notification.State.SENT)

    answer = health.check_notifications(now=now)

    assert answer.status == health.OK
    assert answer.figures["sent_last_15_min"] == 1


def test_sms_owed_for_more_than_ten_minutes_fails(db):
    now = timezone.now()
    owed(channel="sms", created_at=now - 11 * M)
    owed(channel="sms", created_at=now - 12 * M, state=Notification.State.FAILED)
    owed(channel="email", created_at=now - 9 * M)

    answer = health.check_notifications(now=now)

    assert answer.status == health.FAIL
    assert answer.figures["owed_sms"] == 2
    assert answer.figures["owed_email"] == 0
    assert answer.figures["oldest_owed_minutes"] == 12
    assert answer.answer.startswith("Not going out: 2 SMS and 0 emails")


def test_a_message_held_on_purpose_is_not_owed_yet(db):
    now = timezone.now()
    owed(channel="sms", created_at=now - 11 * M, next_attempt_at=now + M)

    assert health.check_notifications(now=now).status == health.OK


def test_failing_email_fallback_warns(db):
    now = timezone.now()
    sms = owed(
        channel="sms",
        created_at=now - 5 * M,
        state=Notification.State.UNDELIVERABLE,
        last_error_code="superseded",
    )
    owed(
        channel="email",
        created_at=now - 4 * M,
        state=Notification.State.UNDELIVERABLE,
        fallback_of=sms,
    )

    answer = health.check_notifications(now=now)

    assert answer.status == health.WARN
    assert answer.figures["failed_fallback_emails_last_15_min"] == 1
    # The SMS written off for its fallback is not a failure of its own.
    assert answer.figures["failed_sms_last_15_min"] == 0
    assert "fallback is failing" in answer.answer


# --- 4. Airtable --------------------------------------------------------------


def test_airtable_ok_when_calls_are_synced(harbor):
    CallFactory(business=harbor, airtable_state=Call.SyncState.SYNCED)

    assert health.check_airtable(now=timezone.now()).status == health.OK


def test_airtable_call_waiting_fails_and_failures_warn_masked(harbor):
    now = timezone.now()
    harbor.airtable_base_id = "appHARBOR00000000"
    harbor.save(update_fields=["airtable_base_id"])
    failing = CallFactory(business=harbor)
    call_changed_at(
        failing,
        now - 2 * M,
        airtable_state=Call.SyncState.FAILED,
        airtable_last_error='422 {"error": "Caller +16175550199 invalid"}',
    )

    retrying = health.check_airtable(now=now)
    assert retrying.status == health.WARN
    assert "+16175550199" not in retrying.answer
    # The error is staff detail (a figure), never the public answer.
    assert "Caller" not in retrying.answer
    assert "***0199" in retrying.figures["last_error"]
    assert "617" not in retrying.figures["last_error"]

    waiting = CallFactory(business=harbor)
    call_changed_at(waiting, now - 11 * M)

    answer = health.check_airtable(now=now)
    assert answer.status == health.FAIL
    assert answer.figures["calls_not_in_airtable"] == 1
    assert answer.figures["calls_retrying"] == 1


def test_calls_with_nowhere_to_go_in_airtable_do_not_fail_it(harbor, settings):
    """A call no business owns, or whose business has no base, is never
    written and never retried: it must not hold the check failing."""
    settings.AIRTABLE_API_KEY = "keyTEST"
    now = timezone.now()
    unrouted = CallFactory(business=None)
    call_changed_at(unrouted, now - 60 * M)
    no_base = CallFactory(business=BusinessFactory(airtable_base_id=""))
    call_changed_at(no_base, now - 60 * M)

    answer = health.check_airtable(now=now)

    assert answer.status == health.OK
    assert answer.figures["calls_not_in_airtable"] == 0
    assert answer.figures["calls_without_airtable_base"] == 2
    assert "2 calls have no Airtable base to go to" in answer.answer

    harbor.airtable_base_id = "appHARBOR00000000"
    harbor.save(update_fields=["airtable_base_id"])
    waiting = CallFactory(business=harbor)
    call_changed_at(waiting, now - 11 * M)
    assert health.check_airtable(now=now).status == health.FAIL


# --- 5. Retry scheduler -------------------------------------------------------


def test_scheduler_fails_without_heartbeats(db):
    answer = health.check_scheduler(now=timezone.now())

    assert answer.status == health.FAIL
    assert "beat never seen" in answer.answer


def test_scheduler_alive_then_stale_beat_fails(db):
    now = timezone.now()
    health.heartbeat_record(beat_sent_at=now - dt.timedelta(seconds=5), now=now)

    assert health.check_scheduler(now=now).status == health.OK

    later = now + dt.timedelta(minutes=3)
    health.heartbeat_record(beat_sent_at=None, now=later)  # worker only
    answer = health.check_scheduler(now=later)

    assert answer.status == health.FAIL
    assert answer.answer.startswith("Down: beat silent")
    assert "worker idle and running" in answer.answer


def test_a_stopped_worker_is_named_alone_while_beat_runs(db):
    """Beat records itself when it sends; only the worker is silent."""
    now = timezone.now()
    health.heartbeat_record(beat_sent_at=now, now=now)
    later = now + dt.timedelta(minutes=3)
    health.heartbeat_beat_record(now=later)  # beat sends; nobody runs it

    answer = health.check_scheduler(now=later)

    assert answer.status == health.FAIL
    assert answer.answer.startswith("Down: worker silent for 3 min; beat is running")
    assert "beat silent" not in answer.answer


def test_beat_and_worker_both_silent_are_both_named(db):
    now = timezone.now()
    health.heartbeat_beat_record(now=now)  # beat sent one no worker ran
    later = now + dt.timedelta(minutes=3)

    answer = health.check_scheduler(now=later)

    assert answer.status == health.FAIL
    assert answer.answer.startswith("Down: beat and worker silent")


def test_beat_record_never_moves_back(db):
    now = timezone.now()
    health.heartbeat_beat_record(now=now)
    health.heartbeat_beat_record(now=now - M)

    assert Heartbeat.objects.get(name="beat").last_seen == now


def test_beat_heartbeat_never_moves_back(db):
    now = timezone.now()
    health.heartbeat_record(beat_sent_at=now, now=now)
    health.heartbeat_record(beat_sent_at=now - 5 * M, now=now + M)

    assert Heartbeat.objects.get(name="beat").last_seen == now
    assert Heartbeat.objects.get(name="worker").last_seen == now + M


def test_overdue_retries_warn(db):
    now = timezone.now()
    health.heartbeat_record(beat_sent_at=now, now=now)
    owed(
        channel="sms",
        created_at=now - 4 * M,
        state=Notification.State.FAILED,
        next_attempt_at=now - 3 * M,
    )

    answer = health.check_scheduler(now=now)

    assert answer.status == health.WARN
    assert answer.figures["retries_overdue"] == 1


# --- The report ---------------------------------------------------------------


def test_report_answers_in_runbook_order_worst_first_overall(db):
    now = timezone.now()
    health.heartbeat_record(beat_sent_at=now, now=now)

    report = health.health_report(now=now)

    assert [c.name for c in report.checks] == [
        "call_intake",
        "webhooks",
        "notifications",
        "airtable",
        "scheduler",
    ]
    assert report.status == health.WARN  # silence not judged before a call
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.checks[0].status = health.FAIL

    owed(channel="email", created_at=now - 20 * M)
    assert health.health_report(now=now).status == health.FAIL
