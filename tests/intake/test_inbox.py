import pytest

from intake.inbox import webhook_event_insert
from intake.models import WebhookEvent

pytestmark = pytest.mark.django_db


def test_first_event_is_stored_pending_with_its_payload():
    event = webhook_event_insert(
        provider="twilio", kind="voice_status", event_id="CA1:1", payload={"a": "é"}
    )
    stored = WebhookEvent.objects.get(pk=event.pk)
    assert stored.payload == {"a": "é"}
    assert stored.status == WebhookEvent.Status.PENDING
    assert stored.received_at is not None


def test_same_provider_and_event_id_is_not_stored_twice():
    webhook_event_insert(provider="twilio", kind="k", event_id="CA1:1", payload={})
    again = webhook_event_insert(
        provider="twilio", kind="k", event_id="CA1:1", payload={"changed": True}
    )
    assert again is None
    assert WebhookEvent.objects.get().payload == {}


def test_the_same_event_id_from_another_provider_is_a_different_event():
    webhook_event_insert(provider="twilio", kind="k", event_id="X", payload={})
    assert webhook_event_insert(provider="calls", kind="k", event_id="X", payload={})
