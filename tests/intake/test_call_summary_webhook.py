"""The call provider's end-of-call report webhook: signature, replay, inbox.

Signed like the provider does: `X-Afterhours-Signature: t=<unix>,v1=<hex>`
with HMAC-SHA256 over "<t>.<raw body>" (computed here independently of the
product's code).
"""

import hashlib
import hmac
import json
import time

import pytest
from django.test import Client, override_settings

from intake.call_summary import KIND_CALL_SUMMARY, PROVIDER_CALLS
from intake.models import Call, WebhookEvent
from notifications.models import Notification

URL = "/webhooks/calls/summary/"
SECRET = "test-call-summary-secret"
CALL_ID = "CA11111111111111111111111111111111"
REPORT = {
    "call_id": CALL_ID,
    "caller": "+16175550199",
    "summary": "Basement flooding, water shut off, wants a callback tonight.",
    "urgency": "high",
    "started_at": "2026-12-08T03:01:20+00:00",
    "ended_at": "2026-12-08T03:02:11+00:00",
}


def sign(body: bytes, *, t: int, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256)
    return f"t={t},v1={digest.hexdigest()}"


def post(client, body: bytes, header: str | None):
    extra = {"HTTP_X_AFTERHOURS_SIGNATURE": header} if header is not None else {}
    return client.post(URL, data=body, content_type="application/json", **extra)


def post_signed(client, report: dict = REPORT, *, age: int = 0, **kwargs):
    body = json.dumps(report).encode()
    return post(client, body, sign(body, t=int(time.time()) - age, **kwargs))


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


def _refused(response, queued) -> None:
    assert response.status_code == 403
    assert not WebhookEvent.objects.exists()
    assert not Call.objects.exists()
    assert not Notification.objects.exists()
    assert queued == []


@pytest.mark.django_db
def test_a_signed_report_is_stored_by_call_id_and_queued(client, queued):
    response = post_signed(client)

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert (event.provider, event.kind) == (PROVIDER_CALLS, KIND_CALL_SUMMARY)
    assert event.event_id == CALL_ID
    assert event.payload == REPORT
    assert len(queued) == 1


@pytest.mark.django_db
def test_a_signature_made_with_another_secret_is_refused(client, queued):
    _refused(post_signed(client, secret="another-secret"), queued)


@pytest.mark.django_db
def test_a_body_changed_after_signing_is_refused(client, queued):
    body = json.dumps(REPORT).encode()
    header = sign(body, t=int(time.time()))
    changed = body.replace(b'"high"', b'"low"')

    _refused(post(client, changed, header), queued)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [None, "", "v1=abc", "t=notanumber,v1=abc", "t=1700000000", "garbage"],
)
def test_a_missing_or_unreadable_signature_is_refused(client, queued, header):
    _refused(post(client, json.dumps(REPORT).encode(), header), queued)


@pytest.mark.django_db
def test_a_replay_older_than_five_minutes_is_refused(client, queued):
    _refused(post_signed(client, age=5 * 60 + 5), queued)


@pytest.mark.django_db
def test_a_report_signed_within_five_minutes_is_taken(client, queued):
    assert post_signed(client, age=5 * 60 - 5).status_code == 200


@pytest.mark.django_db
def test_a_timestamp_more_than_five_minutes_ahead_is_refused(client, queued):
    _refused(post_signed(client, age=-(5 * 60 + 5)), queued)


@pytest.mark.django_db
@pytest.mark.parametrize("secret", ["", None])
def test_without_a_secret_every_report_is_refused(client, queued, secret):
    """Even one signed with the empty key: unconfigured means closed."""
    with override_settings(CALL_SUMMARY_WEBHOOK_SECRET=secret):
        _refused(post_signed(client, secret=""), queued)


@pytest.mark.django_db
def test_a_duplicate_report_gets_200_and_changes_nothing(client, queued):
    """An identical replay; a different report is a correction (see
    test_call_summary_input.py)."""
    first = post_signed(client)
    again = post_signed(client)

    assert (first.status_code, again.status_code) == (200, 200)
    assert WebhookEvent.objects.get().payload["summary"] == REPORT["summary"]
    assert len(queued) == 1


@pytest.mark.django_db
def test_while_a_secret_rotates_either_signature_is_taken(client, queued):
    body = json.dumps(REPORT).encode()
    t = int(time.time())
    old = sign(body, t=t, secret="the-old-secret").split(",")[1]
    new = sign(body, t=t).split(",")[1]

    assert post(client, body, f"t={t},{old},{new}").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'["a", "list"]',
        b'{"summary": "no call id"}',
        b'{"call_id": "' + b"C" * 65 + b'"}',
        b'{"call_id": "CAnul", "summary": "\\u0000"}',
        b"\xff\xfe",
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["text", "list", "no-call-id", "long-call-id", "nul", "bytes", "deep"],
)
def test_a_signed_body_that_is_not_a_report_is_400_not_stored(client, queued, body):
    response = post(client, body, sign(body, t=int(time.time())))

    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_only_post_is_allowed(client):
    assert client.get(URL).status_code == 405
