"""The Twilio SMS status webhook: signatures, the inbox, duplicates.

What each report does to its notification is in
tests/notifications/test_delivery_reports.py.
"""

import pytest
from django.test import Client, override_settings

from intake.models import WebhookEvent
from intake.sms_status import KIND_SMS_STATUS
from notifications.models import Notification
from tests.notifications.twilio_reports import post_status, signature, status_params

SID = "SM0123456789abcdef0123456789abcdef"


@pytest.fixture
def client():
    return Client()


@pytest.fixture
def queued(django_capture_on_commit_callbacks, monkeypatch):
    """What each request queued for after its commit (not run)."""
    callbacks = []
    original = Client.post

    def recording_post(self, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=False) as captured:
            response = original(self, *args, **kwargs)
        callbacks.extend(captured)
        return response

    monkeypatch.setattr(Client, "post", recording_post)
    return callbacks


@pytest.mark.django_db
def test_a_signed_report_is_stored_once_and_queued(client, queued):
    params = status_params(sid=SID, status="undelivered", code="30003")

    response = post_status(client, params)

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert (event.provider, event.kind) == ("twilio", KIND_SMS_STATUS)
    assert event.event_id == f"{SID}:undelivered"
    assert event.payload == params
    assert event.status == WebhookEvent.Status.PENDING
    assert len(queued) == 1


@pytest.mark.django_db
def test_a_duplicate_report_gets_200_and_changes_nothing(client, queued):
    params = status_params(sid=SID, status="delivered")

    first = post_status(client, params)
    second = post_status(client, params)

    assert (first.status_code, second.status_code) == (200, 200)
    assert WebhookEvent.objects.count() == 1
    assert len(queued) == 1


@pytest.mark.django_db
def test_each_status_of_one_message_is_its_own_event(client, queued):
    for status in ("queued", "sent", "delivered"):
        response = post_status(client, status_params(sid=SID, status=status))
        assert response.status_code == 200
    assert sorted(WebhookEvent.objects.values_list("event_id", flat=True)) == [
        f"{SID}:delivered",
        f"{SID}:queued",
        f"{SID}:sent",
    ]


def _refused(response, queued) -> None:
    assert response.status_code == 403
    assert not WebhookEvent.objects.exists()
    assert not Notification.objects.exists()
    assert queued == []


@pytest.mark.django_db
def test_an_unsigned_report_is_refused_and_nothing_kept(client, queued):
    _refused(post_status(client, status_params(sid=SID, status="sent"), None), queued)


@pytest.mark.django_db
def test_a_report_signed_with_another_token_is_refused(client, queued):
    params = status_params(sid=SID, status="delivered")
    forged = signature(params, token="some_other_token_000000000000000")

    _refused(post_status(client, params, forged), queued)


@pytest.mark.django_db
def test_a_changed_status_breaks_the_signature(client, queued):
    """A forger cannot turn a signed "undelivered" into "delivered"."""
    params = status_params(sid=SID, status="undelivered", code="30003")
    sig = signature(params)
    params.update(MessageStatus="delivered", SmsStatus="delivered")
    params.pop("ErrorCode")

    _refused(post_status(client, params, sig), queued)


@pytest.mark.django_db
@override_settings(TWILIO_AUTH_TOKEN="")
def test_without_an_auth_token_every_report_is_refused(client, queued):
    _refused(post_status(client, status_params(sid=SID, status="sent")), queued)


@pytest.mark.django_db
def test_a_signed_report_naming_no_message_is_rejected_not_stored(client, queued):
    params = status_params(sid=SID, status="sent")
    del params["MessageSid"], params["SmsSid"]

    response = post_status(client, params)

    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_only_post_is_allowed(client):
    assert client.get("/webhooks/twilio/sms-status/").status_code == 405
