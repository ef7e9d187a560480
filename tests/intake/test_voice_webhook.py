"""The Twilio Voice status webhook: signatures, proxies, the inbox, ordering.

The bodies and signatures are the shared cases (cases/README.md,
"Webhooks"): signed by Twilio for
https://afterhours.example.test/webhooks/twilio/voice/ with the test token.
"""

import threading
import time
from unittest import mock
from urllib.parse import parse_qsl, urlencode

import pytest
from django.db import connection
from django.http import QueryDict
from django.test import Client, override_settings
from twilio.request_validator import RequestValidator

from intake.models import Call, WebhookEvent
from notifications.models import Notification
from standins.twilio import TwilioStandIn
from tests.conftest import fixture_path

URL = "/webhooks/twilio/voice/"
SIGNED_URL = "https://afterhours.example.test/webhooks/twilio/voice/"
SIGNATURES = {
    "ringing": "JBqHGTeHm+8Rs3+eoVJEvUsLmKo=",
    "completed": "0Dz+tXzjcpCvksq/+VS2cwA1rWU=",
}
FORM = "application/x-www-form-urlencoded"


def case_body(name: str) -> str:
    return fixture_path("webhooks", f"voice-status-{name}.form").read_text().strip()


def post(client: Client, body: str, signature: str | None, **extra):
    headers = {"HTTP_X_TWILIO_SIGNATURE": signature} if signature else {}
    return client.post(URL, data=body, content_type=FORM, **headers, **extra)


def post_case(client: Client, name: str, **extra):
    return post(client, case_body(name), SIGNATURES[name], **extra)


@pytest.fixture
def client():
    return Client()


@pytest.fixture
def queued(django_capture_on_commit_callbacks, monkeypatch):
    """What each request of the test queued for after its commit (not run)."""
    callbacks = []
    original = Client.post

    def recording_post(self, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=False) as captured:
            response = original(self, *args, **kwargs)
        callbacks.extend(captured)
        return response

    monkeypatch.setattr(Client, "post", recording_post)
    return callbacks


# --- Signatures -----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["ringing", "completed"])
def test_a_case_signed_by_twilio_is_stored_in_the_inbox(client, queued, name):
    """200, one inbox row keyed `<CallSid>:<SequenceNumber>`, one task queued."""
    response = post_case(client, name)

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    params = dict(parse_qsl(case_body(name)))
    assert (event.provider, event.kind) == ("twilio", "voice_status")
    assert event.event_id == f"{params['CallSid']}:{params['SequenceNumber']}"
    assert event.payload == params
    assert event.status == WebhookEvent.Status.PENDING
    assert len(queued) == 1


def _refused(response, queued) -> None:
    assert response.status_code == 403
    assert not WebhookEvent.objects.exists()
    assert not Call.objects.exists()
    assert not Notification.objects.exists()
    assert queued == []


@pytest.mark.django_db
def test_a_request_without_signature_is_refused_and_nothing_kept(client, queued):
    _refused(post(client, case_body("completed"), None), queued)


@pytest.mark.django_db
def test_a_signature_made_with_another_token_is_refused(client, queued):
    params = dict(parse_qsl(case_body("completed")))
    forged = RequestValidator("some_other_token_000000000000000").compute_signature(
        SIGNED_URL, params
    )

    _refused(post(client, case_body("completed"), forged), queued)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change",
    [
        ("CallDuration=47", "CallDuration=4700"),
        ("CallStatus=completed", "CallStatus=failed"),
        ("To=%2B16175550142", "To=%2B16175550143"),
        ("SequenceNumber=3", "SequenceNumber=3&Extra=1"),
    ],
)
def test_a_changed_parameter_breaks_the_signature(client, queued, change):
    body = case_body("completed")
    assert change[0] in body

    _refused(post(client, body.replace(*change), SIGNATURES["completed"]), queued)


@pytest.mark.django_db
def test_a_signature_for_another_url_is_refused(client, queued):
    """The ringing signature is valid for its own body, not under a query."""
    response = client.post(
        URL + "?tenant=other",
        data=case_body("ringing"),
        content_type=FORM,
        HTTP_X_TWILIO_SIGNATURE=SIGNATURES["ringing"],
    )

    _refused(response, queued)


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["", None])
def test_without_an_auth_token_every_request_is_refused(client, queued, token):
    """An unconfigured webhook is closed, even to a correctly signed request."""
    with override_settings(TWILIO_AUTH_TOKEN=token):
        _refused(post_case(client, "completed"), queued)


@pytest.mark.django_db
def test_other_methods_are_not_allowed(client):
    assert client.get(URL).status_code == 405


@pytest.mark.django_db
def test_every_value_of_a_repeated_parameter_is_signed(client, queued):
    """Twilio signs each value of a repeated key; all of them count."""
    pairs = [*parse_qsl(case_body("ringing")), ("Tag", "b"), ("Tag", "a")]
    body = urlencode(pairs)
    validator = RequestValidator("test_auth_token_0000000000000000")
    signature = validator.compute_signature(SIGNED_URL, QueryDict(body))

    assert post(client, body, signature).status_code == 200
    assert WebhookEvent.objects.get().payload["Tag"] == ["b", "a"]
    dropped = urlencode([*parse_qsl(case_body("ringing")), ("Tag", "b")])
    WebhookEvent.objects.all().delete()
    assert post(client, dropped, signature).status_code == 403


@pytest.mark.django_db
def test_a_signed_request_naming_no_call_is_rejected_not_stored(client, queued):
    body = "AccountSid=AC00000000000000000000000000000000&CallStatus=completed"
    signature = RequestValidator("test_auth_token_0000000000000000").compute_signature(
        SIGNED_URL, dict(parse_qsl(body))
    )

    response = post(client, body, signature)

    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


# --- Behind our TLS proxy -------------------------------------------------

PROXIED = {
    "PUBLIC_BASE_URL": "",
    "TRUSTED_PROXY_IPS": ["127.0.0.1"],
}


@pytest.mark.django_db
@override_settings(**PROXIED)
def test_plain_http_from_our_trusted_proxy_is_checked_against_https(client, queued):
    """The proxy ended TLS; its X-Forwarded-Proto rebuilds the signed URL."""
    response = post_case(
        client,
        "completed",
        HTTP_HOST="afterhours.example.test",
        HTTP_X_FORWARDED_PROTO="https",
        REMOTE_ADDR="127.0.0.1",
    )

    assert response.status_code == 200
    assert WebhookEvent.objects.count() == 1


@pytest.mark.django_db
@override_settings(PUBLIC_BASE_URL="", TRUSTED_PROXY_IPS=["10.0.0.0/8"])
def test_a_trusted_proxy_network_and_forwarded_host_are_believed(client, queued):
    response = post_case(
        client,
        "ringing",
        HTTP_HOST="web-1.internal:8000",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_HOST="afterhours.example.test",
        REMOTE_ADDR="10.1.2.3",
    )

    assert response.status_code == 200


@pytest.mark.django_db
@override_settings(**PROXIED)
def test_the_same_forwarded_header_from_an_untrusted_client_is_refused(client, queued):
    response = post_case(
        client,
        "completed",
        HTTP_HOST="afterhours.example.test",
        HTTP_X_FORWARDED_PROTO="https",
        REMOTE_ADDR="203.0.113.50",
    )

    _refused(response, queued)


@pytest.mark.django_db
@override_settings(
    **PROXIED, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")
)
def test_djangos_proxy_header_setting_does_not_make_a_client_trusted(client, queued):
    """Only TRUSTED_PROXY_IPS decides, whatever else is configured."""
    response = post_case(
        client,
        "completed",
        HTTP_HOST="afterhours.example.test",
        HTTP_X_FORWARDED_PROTO="https",
        REMOTE_ADDR="203.0.113.50",
    )

    _refused(response, queued)


@pytest.mark.django_db
@override_settings(**PROXIED)
def test_a_trusted_proxy_without_the_header_is_taken_as_plain_http(client, queued):
    response = post_case(
        client,
        "completed",
        HTTP_HOST="afterhours.example.test",
        REMOTE_ADDR="127.0.0.1",
    )

    _refused(response, queued)


# --- Duplicates and order, through a real worker --------------------------


def test_a_duplicate_callback_gets_200_and_stores_nothing_new(client, transactional_db):
    with mock.patch("intake.tasks.call_event_process.delay") as delay:
        first = post_case(client, "completed")
        second = post_case(client, "completed")

    assert (first.status_code, second.status_code) == (200, 200)
    assert WebhookEvent.objects.count() == 1
    assert delay.call_count == 1


def _post_concurrently(name: str, times: int) -> list[int]:
    """Deliver one signed callback `times` at once, as Twilio's retries can."""
    barrier = threading.Barrier(times)
    statuses: list[int] = []

    def deliver():
        try:
            barrier.wait()
            statuses.append(post_case(Client(), name).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def _wait_for(condition, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not finish in time")
        time.sleep(0.1)


def test_completed_before_ringing_and_twice_makes_one_call_one_summary(
    businesses, celery_worker
):
    """Sequence 3 arrives first and twice at once, sequence 1 late.

    One call, status completed; one Airtable push for it; one on-call SMS
    sent through Twilio. The late ringing and the duplicate get 200 and
    change nothing.
    """
    from intake import airtable

    harbor = businesses["Harbor Plumbing & Heating"]
    with (
        TwilioStandIn() as twilio,
        override_settings(TWILIO_API_BASE_URL=twilio.url),
        mock.patch.object(
            airtable, "call_airtable_push", wraps=airtable.call_airtable_push
        ) as airtable_push,
    ):
        assert _post_concurrently("completed", 2) == [200, 200]
        _wait_for(
            lambda: (
                Notification.objects.filter(state=Notification.State.SENT).exists()
                and Call.objects.filter(airtable_state=Call.SyncState.SKIPPED).exists()
            )
        )
        call = Call.objects.get()
        snapshot = Call.objects.values().get()

        assert post_case(Client(), "ringing").status_code == 200
        _wait_for(
            lambda: (
                not WebhookEvent.objects.filter(
                    status=WebhookEvent.Status.PENDING
                ).exists()
            )
        )

    assert Call.objects.count() == 1
    call.refresh_from_db()
    assert call.status == Call.Status.COMPLETED
    assert call.business == harbor
    assert call.duration_seconds == 47
    assert call.last_sequence == 3
    assert Call.objects.values().get() == snapshot

    events = {e.event_id.rsplit(":", 1)[1]: e for e in WebhookEvent.objects.all()}
    assert sorted(events) == ["1", "3"]
    assert events["3"].status == WebhookEvent.Status.PROCESSED
    assert events["1"].status == WebhookEvent.Status.IGNORED

    assert airtable_push.call_args_list == [mock.call(call_id=call.pk)]

    notification = Notification.objects.get()
    on_call = harbor.on_call_contacts.get()
    assert notification.recipient == on_call.phone
    assert notification.call == call
    assert notification.dedupe_key == f"call_summary:{call.pk}:sms:{on_call.phone}"
    assert len(twilio.messages) == 1
    message = twilio.messages[0]
    assert message["to"] == on_call.phone
    assert message["sid"] == notification.provider_message_id
    assert "+16175550199" in message["body"]
    assert "47s" in message["body"]
    assert "Summary to follow" in message["body"]


@pytest.mark.django_db
def test_a_signed_callback_with_an_oversized_call_id_gets_400_not_500(client, queued):
    """Found by a new-user trial: a 502-character CallSid reached the insert."""
    from urllib.parse import parse_qsl, urlencode

    from django.conf import settings
    from twilio.request_validator import RequestValidator

    params = dict(parse_qsl(case_body("completed")))
    params["CallSid"] = "CA" + "f" * 500
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(
        SIGNED_URL, params
    )

    response = post(client, urlencode(params), signature)

    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()
    assert queued == []
