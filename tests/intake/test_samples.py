"""The README's samples, tried as a new user would.

From a new-user trial: the two sample messages were the same one, so trying
both opened two P0 tickets and paged on-call twice; and the .eml's Date lay
in the future, so its due times were days out. The samples are now two
different customers' messages, and `ingest_email --arrived-now` takes the
current time as the arrival.
"""

import base64
import datetime as dt
import json
from io import StringIO
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from intake.email import parse_email
from intake.models import InboundEmail
from notifications.models import Notification
from tickets.models import Ticket

SAMPLES = Path(__file__).resolve().parent.parent.parent / "samples"
EML = SAMPLES / "support-email.eml"
POSTMARK = SAMPLES / "postmark-inbound.json"


def ingest(*args) -> dict:
    out = StringIO()
    call_command("ingest_email", str(EML), "--json", *args, stdout=out)
    return json.loads(out.getvalue())


def post_postmark(client):
    token = base64.b64encode(settings.ANYMAIL["WEBHOOK_SECRET"].encode()).decode()
    with override_settings(ANYMAIL_ESP="postmark"):
        return client.post(
            "/anymail/postmark/inbound/",
            data=POSTMARK.read_bytes(),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Basic {token}",
        )


def test_sample_eml_is_a_p1_from_another_business(businesses):
    result = ingest("--arrived-now")

    assert result["business"] == "Cedar Ridge Veterinary Clinic"
    assert result["priority"] == "P1"
    assert result["thread"] == "new"
    assert result["first_reply_sent"] is True


def test_the_two_samples_are_different_messages(businesses):
    eml = parse_email(EML.read_bytes())
    postmark = json.loads(POSTMARK.read_text())

    assert eml.from_address != postmark["FromFull"]["Email"]
    assert eml.subject != postmark["Subject"]
    assert eml.message_id not in json.dumps(postmark["Headers"])


def test_trying_both_samples_opens_two_tickets_and_pages_once(
    businesses, client, django_capture_on_commit_callbacks, monkeypatch
):
    from intake.tasks import inbound_email_process_task
    from notifications.tasks import notification_send

    monkeypatch.setattr(inbound_email_process_task, "delay", inbound_email_process_task)
    monkeypatch.setattr(notification_send, "delay", lambda pk: None)
    with django_capture_on_commit_callbacks(execute=True):
        assert post_postmark(client).status_code == 200
    ingest("--arrived-now")

    tickets = {t.business.name: t.priority for t in Ticket.objects.all()}
    assert tickets == {
        "Harbor Plumbing & Heating": "P0",
        "Cedar Ridge Veterinary Clinic": "P1",
    }
    pages = Notification.objects.filter(reason=Notification.Reason.P0_PAGE)
    assert {page.ticket.business.name for page in pages} == {
        "Harbor Plumbing & Heating"
    }


def test_sample_eml_date_is_in_the_past():
    assert parse_email(EML.read_bytes()).date < timezone.now()


def test_arrived_now_takes_the_current_time_and_due_times_follow(businesses):
    before = timezone.now()

    ingest("--arrived-now")

    after = timezone.now()
    row = InboundEmail.objects.get()
    assert before <= row.received_at <= after
    ticket = Ticket.objects.get()
    assert before <= ticket.received_at <= after
    assert ticket.acknowledge_due > before
    assert ticket.acknowledge_due - ticket.received_at <= dt.timedelta(hours=1)


def test_without_arrived_now_the_date_header_is_the_arrival(businesses):
    ingest()

    row = InboundEmail.objects.get()
    assert row.received_at == parse_email(EML.read_bytes()).date
    assert Ticket.objects.get().received_at == row.received_at
