"""Inbound mail with large attachments is kept, whatever the ESP's format.

A customer's 4 MB screenshot makes Postmark's JSON post ~5.6 MB, past
Django's 2.5 MB default: the trial got 400 RequestDataTooBig and the mail
was lost. The webhook reads up to settings.INBOUND_EMAIL_MAX_BYTES; a post
over that is recorded (its first bytes and size) for an agent.
"""

import base64
import json
import os
from email.message import EmailMessage

import pytest
from django.test import override_settings

from intake.models import InboundEmail
from tests.intake.test_esp_webhooks import (
    T01,
    mailgun_form,
    parsed,
    postmark_json,
    sendgrid_fields,
    sendgrid_multipart,
)
from tickets.models import Ticket

SCREENSHOT = b"\x89PNG\r\n\x1a\n" + os.urandom(4 * 1024 * 1024)


def with_attachment(raw: bytes = T01, content: bytes = SCREENSHOT) -> bytes:
    """T01 as a raw MIME message carrying `content` as a PNG attachment."""
    original = parsed(raw)
    message = EmailMessage()
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        message[name] = str(original[name])
    message.set_content(original.get_content())
    message.add_attachment(
        content, maintype="image", subtype="png", filename="missed-calls.png"
    )
    return message.as_bytes()


def postmark_with_attachment(content: bytes = SCREENSHOT) -> str:
    payload = json.loads(postmark_json())
    payload["Attachments"] = [
        {
            "Name": "missed-calls.png",
            "Content": base64.b64encode(content).decode(),
            "ContentType": "image/png",
            "ContentLength": len(content),
        }
    ]
    return json.dumps(payload)


def assert_ticket_with_the_screenshot():
    ticket = Ticket.objects.get()
    assert ticket.priority == "P0"
    attachment = ticket.messages.get(direction="in").attachments.get()
    assert attachment.filename == "missed-calls.png"
    assert attachment.size == len(SCREENSHOT)
    with attachment.file.open("rb") as handle:
        assert handle.read() == SCREENSHOT
    assert InboundEmail.objects.get().status == InboundEmail.Status.PROCESSED


def test_postmark_post_with_a_4mb_attachment_opens_a_ticket(businesses, post):
    body = postmark_with_attachment()
    assert len(body) > 5_500_000

    response = post("postmark", data=body, content_type="application/json")

    assert response.status_code == 200
    assert_ticket_with_the_screenshot()


def test_mailgun_raw_mime_post_of_5mb_opens_a_ticket(businesses, post):
    raw = with_attachment()
    form = mailgun_form()
    del form["message-headers"], form["body-plain"]
    form["body-mime"] = raw.decode("ascii")

    response = post("mailgun", data=form)

    assert response.status_code == 200
    assert bytes(InboundEmail.objects.get().raw) == raw
    assert_ticket_with_the_screenshot()


def test_sendgrid_raw_post_of_5mb_opens_a_ticket(businesses, post):
    raw = with_attachment()
    fields = sendgrid_fields()
    del fields["headers"], fields["text"]
    fields["email"] = raw

    response = post(
        "sendgrid",
        data=sendgrid_multipart(fields),
        content_type="multipart/form-data; boundary=xYzZY",
    )

    assert response.status_code == 200
    assert bytes(InboundEmail.objects.get().raw) == raw
    assert_ticket_with_the_screenshot()


def test_sendgrid_parsed_post_with_a_4mb_file_opens_a_ticket(businesses, post):
    fields = sendgrid_fields()
    fields["attachments"] = b"1"
    fields["attachment-info"] = json.dumps(
        {"attachment1": {"filename": "missed-calls.png", "type": "image/png"}}
    ).encode()
    body = sendgrid_multipart(fields)[: -len(b"--xYzZY--\r\n")] + (
        b'--xYzZY\r\nContent-Disposition: form-data; name="attachment1"; '
        b'filename="missed-calls.png"\r\nContent-Type: image/png\r\n\r\n'
        + SCREENSHOT
        + b"\r\n--xYzZY--\r\n"
    )

    response = post(
        "sendgrid", data=body, content_type="multipart/form-data; boundary=xYzZY"
    )

    assert response.status_code == 200
    assert_ticket_with_the_screenshot()


@override_settings(INBOUND_EMAIL_MAX_BYTES=1_000_000)
def test_postmark_post_over_the_limit_is_recorded_for_an_agent(businesses, post):
    body = postmark_with_attachment(SCREENSHOT[:2_000_000])

    response = post("postmark", data=body, content_type="application/json")

    assert response.status_code == 200
    row = InboundEmail.objects.get()
    assert row.status == InboundEmail.Status.REJECTED
    assert str(len(body)) in row.reason
    assert "INBOUND_EMAIL_MAX_BYTES" in row.reason
    assert row.from_address == "dispatch@harborplumbing.example"
    assert row.subject == "No call summaries tonight"
    assert row.message_id == "<t01.20261204@mail.example>"
    assert bytes(row.raw) == body.encode()[: len(bytes(row.raw))]
    assert 0 < len(bytes(row.raw)) < 1_000_000
    assert not Ticket.objects.exists()


@override_settings(INBOUND_EMAIL_MAX_BYTES=1_000_000)
def test_raw_post_over_the_limit_retried_is_recorded_once(businesses, post):
    raw = with_attachment(content=SCREENSHOT[:2_000_000])
    form = mailgun_form()
    del form["message-headers"], form["body-plain"]
    form["body-mime"] = raw.decode("ascii")

    for _ in range(2):
        assert post("mailgun", data=form).status_code == 200

    row = InboundEmail.objects.get()
    assert row.status == InboundEmail.Status.REJECTED
    assert row.message_id == "<t01.20261204@mail.example>"
    assert row.from_address == "dispatch@harborplumbing.example"
    assert row.subject == "No call summaries tonight"


@pytest.mark.parametrize("auth", ["", "test:wrong-secret"])
@override_settings(INBOUND_EMAIL_MAX_BYTES=1_000_000)
def test_post_over_the_limit_without_the_secret_stores_nothing(db, post, auth):
    body = postmark_with_attachment(SCREENSHOT[:2_000_000])

    response = post("postmark", data=body, content_type="application/json", auth=auth)

    assert response.status_code == 400
    assert not InboundEmail.objects.exists()


def test_other_views_keep_djangos_body_limit(client, settings):
    """Only the inbound webhook reads large bodies; the rest stay refused."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = client.post(
        "/webhooks/calls/summary/", data=b"x" * 5000, content_type="application/json"
    )

    assert response.status_code == 400
