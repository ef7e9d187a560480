"""Signed voice callbacks carrying what no call should: each gets a clear
answer, nothing is dropped, and somebody hears of every call.

Found by trying the product as a new operator would: a NUL byte made
PostgreSQL refuse the inbox row (500, Twilio retrying for ever); a
Timestamp past year 9999 crashed the task five times and the call was
never recorded; a call to a number no business owns, or for a business
with nobody on call by text, told nobody at all.
"""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qsl, urlencode

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client
from django.utils import timezone
from twilio.request_validator import RequestValidator

from accounts.models import OnCallContact
from intake.calls import call_event_record, call_status_event_store
from intake.models import Call, WebhookEvent
from notifications.models import Notification
from tests.conftest import fixture_path

URL = "/webhooks/twilio/voice/"
SIGNED_URL = "https://afterhours.example.test/webhooks/twilio/voice/"
HARBOR = "Harbor Plumbing & Heating"


def case(name: str, **changes: str) -> dict[str, str]:
    body = fixture_path("webhooks", f"voice-status-{name}.form").read_text().strip()
    return {**dict(parse_qsl(body)), **changes}


def post_signed(params: dict[str, str]):
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(
        SIGNED_URL, params
    )
    return Client().post(
        URL,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )


def deliver(payload: dict) -> Call | None:
    event, _ = call_status_event_store(payload=payload)
    return call_event_record(webhook_event_id=event.pk)


# --- What PostgreSQL cannot store ---------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["From", "CallerName", "To"])
def test_a_nul_byte_in_a_signed_callback_is_kept_not_refused(businesses, field):
    params = case("completed")
    params[field] = params.get(field, "Dana") + "\x00x"

    response = post_signed(params)

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert "\x00" not in repr(event.payload)
    assert "\ufffd" in str(event.payload[field])


@pytest.mark.django_db
def test_a_nul_byte_in_an_sms_status_callback_is_kept_not_refused():
    from tests.notifications.twilio_reports import post_status, status_params

    params = status_params(sid="SM" + "0" * 32, status="failed", code="3\x000003")

    response = post_status(Client(), params)

    assert response.status_code == 200
    assert WebhookEvent.objects.get().payload["ErrorCode"] == "3\ufffd0003"


@pytest.mark.django_db
def test_a_nul_byte_never_reaches_the_call_or_its_sms(businesses):
    call = deliver(case("completed", From="+1617\x00555"))

    assert "\x00" not in call.caller_number
    assert "\x00" not in Notification.objects.get().body


@pytest.mark.django_db
def test_control_and_direction_characters_never_reach_the_sms(businesses):
    """U+202E would show the rest of the text backwards on the phone."""
    deliver(case("completed", From="+1617\u202e5550199\x07"))

    body = Notification.objects.get().body
    assert "\u202e" not in body and "\x07" not in body
    assert "call from +16175550199" in body


# --- Times -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_timestamp_past_year_9999_is_read_as_the_arrival_time(businesses):
    before = timezone.now()

    call = deliver(case("completed", Timestamp="Fri, 31 Dec 9999 23:59:59 -1200"))

    assert call is not None and call.status == "completed"
    assert before - timedelta(seconds=1) <= call.ended_at <= timezone.now()
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED
    assert Notification.objects.filter(call=call).count() == 1


@pytest.mark.django_db
def test_a_timestamp_from_the_future_is_not_believed(businesses):
    """A sender's clock hours ahead must not date the call tomorrow."""
    ahead = format_datetime(datetime.now(UTC) + timedelta(hours=5))

    call = deliver(case("completed", Timestamp=ahead))

    assert call.ended_at <= timezone.now()


@pytest.mark.django_db
def test_a_timestamp_a_little_ahead_is_taken_as_given(businesses):
    """Clocks differ by seconds; that is no reason to distrust them."""
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20)

    call = deliver(case("completed", Timestamp=format_datetime(ahead)))

    assert call.ended_at == ahead


# --- Somebody hears of every call ---------------------------------------------


@pytest.fixture
def support_on_call(settings):
    settings.SUPPORT_ONCALL_EMAIL = "oncall@afterhours.example"
    settings.SUPPORT_ONCALL_PHONE = "+16175550100"


@pytest.mark.django_db
def test_a_call_to_a_number_no_business_owns_alerts_operations_once(
    businesses, support_on_call
):
    unknown = "+19995550000"

    deliver(case("ringing", To=unknown))
    deliver(case("completed", To=unknown))
    deliver(case("completed", To=unknown, CallSid="CA" + "f" * 32))

    assert Call.objects.filter(business__isnull=True).count() == 2
    alerts = Notification.objects.filter(reason=Notification.Reason.OPS_ALERT)
    assert sorted(alerts.values_list("channel", flat=True)) == ["email", "sms"]
    email = alerts.get(channel="email")
    assert "ending 0000" in email.subject, "logged: never the whole number"
    assert unknown in email.body and "no business" in email.body
    assert not Notification.objects.exclude(reason=Notification.Reason.OPS_ALERT)


@pytest.mark.django_db
def test_a_business_on_call_only_by_email_gets_the_summary_by_email(businesses):
    harbor = businesses[HARBOR]
    contact = harbor.on_call_contacts.get()
    OnCallContact.objects.filter(pk=contact.pk).update(phone="")
    assert contact.email

    deliver(case("ringing"))
    call = deliver(case("completed"))

    [summary] = Notification.objects.filter(call=call)
    assert (summary.channel, summary.reason) == ("email", "call_summary")
    assert summary.recipient == contact.email
    assert "call from +16175550199" in summary.body
    assert summary.subject.startswith(f"Call summary: {harbor.name}")
    assert not mail.outbox, "owed through the outbox, not sent inline"


@pytest.mark.django_db
def test_a_business_with_nobody_on_call_alerts_operations(businesses, support_on_call):
    harbor = businesses[HARBOR]
    harbor.on_call_contacts.all().delete()

    call = deliver(case("completed"))

    assert not Notification.objects.filter(call=call).exists()
    alert = Notification.objects.get(reason="ops_alert", channel="email")
    assert harbor.name in alert.subject
    assert "nobody on call" in alert.body


@pytest.mark.django_db
def test_operations_hear_of_one_topic_once_in_any_hour_not_per_clock_hour(
    support_on_call,
):
    """Two alerts seconds apart either side of 22:00 were both sent."""
    from notifications.services import ops_alert_owe

    late = datetime(2026, 12, 4, 21, 59, 59, tzinfo=UTC)

    def alert(now):
        return ops_alert_owe(topic="unrouted:test", subject="s", body="b", now=now)

    assert len(alert(late)) == 2
    assert alert(late + timedelta(seconds=2)) == []
    assert alert(late + timedelta(minutes=59)) == []
    assert len(alert(late + timedelta(minutes=61))) == 2


@pytest.mark.django_db
def test_a_callback_we_cannot_read_is_kept_and_operations_hear_of_it(
    businesses, support_on_call
):
    """Its call may be missing or stale: somebody must look at it."""
    event, _ = call_status_event_store(payload=case("completed", CallStatus="x"))

    call_event_record(webhook_event_id=event.pk)

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED
    alert = Notification.objects.get(reason="ops_alert", channel="email")
    assert f"/admin/intake/webhookevent/{event.pk}/" in alert.body
    assert "+16175550199" not in alert.subject


@pytest.mark.django_db
def test_an_event_given_up_after_its_attempts_is_told_to_operations(
    businesses, support_on_call, monkeypatch
):
    from intake import calls

    def broken(**kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(calls, "call_upsert_from_status", broken)
    event, _ = call_status_event_store(payload=case("completed"))
    for _ in range(calls.MAX_EVENT_ATTEMPTS):
        with pytest.raises(RuntimeError):
            call_event_record(webhook_event_id=event.pk)

    assert call_event_record(webhook_event_id=event.pk) is None

    alert = Notification.objects.get(reason="ops_alert", channel="email")
    assert "gave up" in alert.body
    assert f"/admin/intake/webhookevent/{event.pk}/" in alert.body
