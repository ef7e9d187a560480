"""Parsing, storing and processing inbound support email."""

import datetime as dt
import time

import pytest
from django.conf import settings
from django.test import override_settings

from intake.email import decode_text, parse_email
from intake.models import InboundEmail
from intake.services import inbound_email_process, inbound_email_store
from notifications.models import Notification
from tests.conftest import fixture_path
from tickets.models import Ticket


def make_email(*, headers="", body="Our line 617-555-0142 stopped texting.") -> bytes:
    return (
        "From: Dana <dispatch@harborplumbing.example>\r\n"
        "To: support@afterhours.example\r\n"
        "Subject: Help\r\n"
        "Date: Tue, 08 Dec 2026 15:00:00 +0000\r\n"
        f"{headers}"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def test_parse_gives_decoded_fields_and_an_aware_date():
    parsed = parse_email(
        fixture_path("mime", "win1252-folded-subject.eml").read_bytes()
    )

    assert parsed.message_id == "<20261101070512.4411@cafe-nord.example>"
    assert parsed.from_name == "Renée Okafor"
    assert parsed.from_address == "owner@cafe-nord.example"
    assert parsed.to == ["support@afterhours.example"]
    assert parsed.subject == "Lignes coupées – Café Nord [urgent]"
    assert parsed.date == dt.datetime(2026, 11, 1, 12, 5, 12, tzinfo=dt.UTC)
    assert parsed.date.tzinfo is not None
    assert not parsed.is_automatic
    assert not parsed.malformed


def test_parse_reads_thread_headers_nearest_first():
    parsed = parse_email(fixture_path("mime", "reply-completes-facts.eml").read_bytes())

    assert parsed.in_reply_to == "<first-reply-unknown@afterhours.example>"
    assert parsed.references == [
        "<t02.20261204@mail.example>",
        "<first-reply-unknown@afterhours.example>",
    ]
    assert parsed.thread_ids[0] == "<first-reply-unknown@afterhours.example>"
    assert parsed.subject == "Re: Summary formatting looks off [AH-1042]"


def test_reply_text_leaves_out_the_quoted_history():
    parsed = parse_email(fixture_path("mime", "reply-completes-facts.eml").read_bytes())

    assert "We need a few more details" in parsed.text
    assert "We need a few more details" not in parsed.new_text
    assert "312-555-0118" in parsed.new_text


@pytest.mark.parametrize(
    ("payload", "declared", "expected"),
    [
        ("Café – “ok”".encode("windows-1252"), None, "Café – “ok”"),
        ("Café".encode(), None, "Café"),
        ("Café".encode("iso-8859-1"), "iso-8859-1", "Café"),
        ("Café – ok".encode("windows-1252"), "utf-8", "Café – ok"),
        ("Café".encode(), "no-such-charset", "Café"),
    ],
)
def test_decode_text_tries_declared_then_utf8_then_windows_1252(
    payload, declared, expected
):
    assert decode_text(payload, declared) == expected


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ("Auto-Submitted: auto-replied\r\n", "Auto-Submitted"),
        ("Auto-Submitted: auto-generated\r\n", "Auto-Submitted"),
        ("Precedence: bulk\r\n", "Precedence"),
        ("Precedence: junk\r\n", "Precedence"),
        ("Precedence: list\r\n", "Precedence"),
        ("Precedence: auto_reply\r\n", "Precedence"),
        ("X-Auto-Response-Suppress: All\r\n", "X-Auto-Response-Suppress"),
        ("Return-Path: <>\r\n", "Return-Path"),
    ],
)
def test_automatic_mail_is_recognised(headers, why):
    parsed = parse_email(make_email(headers=headers))

    assert parsed.is_automatic
    assert why in parsed.automatic_why


@pytest.mark.parametrize(
    "sender",
    ["MAILER-DAEMON@mx.example", "postmaster@mx.example", "support@afterhours.example"],
)
def test_mail_from_daemons_and_from_ourselves_is_automatic(sender):
    raw = make_email().replace(b"dispatch@harborplumbing.example", sender.encode())

    assert parse_email(raw).is_automatic


def test_auto_submitted_no_is_a_person_writing():
    parsed = parse_email(make_email(headers="Auto-Submitted: no\r\n"))

    assert not parsed.is_automatic


def test_delivery_report_is_automatic_and_names_the_failed_address():
    parsed = parse_email(fixture_path("mime", "bounce-dsn.eml").read_bytes())

    assert parsed.is_automatic
    assert parsed.bounced_addresses == ["oncall-old@cedarridgevet.example"]


def test_delayed_delivery_report_marks_no_address():
    raw = fixture_path("mime", "bounce-dsn.eml").read_bytes()
    parsed = parse_email(raw.replace(b"Action: failed", b"Action: delayed"))

    assert parsed.is_automatic
    assert parsed.bounced_addresses == []


def test_store_is_idempotent_on_message_id(db):
    raw = make_email(headers="Message-ID: <same@mail.example>\r\n")

    first, created_first = inbound_email_store(raw=raw, esp="postmark")
    second, created_second = inbound_email_store(raw=raw, esp="postmark")

    assert created_first and not created_second
    assert first.pk == second.pk
    assert InboundEmail.objects.count() == 1
    assert bytes(first.raw) == raw


def test_message_without_message_id_gets_a_stable_one_from_its_bytes(db):
    raw = make_email()
    other = make_email(body="Something else entirely.")

    first, _ = inbound_email_store(raw=raw, esp="mailgun")
    again, created = inbound_email_store(raw=raw, esp="mailgun")
    different, _ = inbound_email_store(raw=other, esp="mailgun")

    assert not created
    assert again.pk == first.pk
    assert different.pk != first.pk
    assert first.message_id.startswith("<") and first.message_id.endswith(">")
    assert first.message_id == parse_email(raw).message_id


def test_line_break_inside_a_decoded_header_is_rejected_with_its_reason(db):
    raw = make_email(headers="Message-ID: <bad@mail.example>\r\n").replace(
        b"Subject: Help", b"Subject: =?utf-8?q?Help=0D=0ABcc:_x@evil.example?="
    )

    inbound_email, _ = inbound_email_store(raw=raw, esp="mailgun")
    result = inbound_email_process(inbound_email_id=inbound_email.pk)

    inbound_email.refresh_from_db()
    assert inbound_email.status == InboundEmail.Status.REJECTED
    assert "Subject" in inbound_email.reason
    assert "line break" in inbound_email.reason
    assert result.ticket is None
    assert not Ticket.objects.exists()
    assert not Notification.objects.exists()


def test_nul_characters_never_reach_the_database_as_text(db):
    """PostgreSQL text refuses NUL: such mail is kept, set aside, not a 500."""
    raw = make_email(
        headers="Message-ID: <nul@mail.example>\r\n", body="Line\x00 quiet."
    ).replace(b"Subject: Help", b"Subject: He\x00lp")

    inbound_email, _ = inbound_email_store(raw=raw, esp="mailgun")

    inbound_email.refresh_from_db()
    assert inbound_email.status == InboundEmail.Status.REJECTED
    assert "NUL" in inbound_email.reason
    assert inbound_email.subject == "Help"
    assert parse_email(raw).text == "Line quiet."


def test_processing_twice_changes_nothing(businesses):
    raw = make_email(headers="Message-ID: <twice@mail.example>\r\n")
    inbound_email, _ = inbound_email_store(raw=raw, esp="postmark")

    first = inbound_email_process(inbound_email_id=inbound_email.pk)
    second = inbound_email_process(inbound_email_id=inbound_email.pk)

    assert first.ticket == second.ticket
    assert Ticket.objects.count() == 1
    assert Notification.objects.filter(reason="first_reply").count() == 1
    inbound_email.refresh_from_db()
    assert inbound_email.status == InboundEmail.Status.PROCESSED
    assert inbound_email.ticket.reference == first.ticket


def test_processing_a_missing_row_returns_quietly(db):
    result = inbound_email_process(inbound_email_id=987654)

    assert result.ticket is None


def test_signal_to_task_path_opens_the_ticket_on_a_real_worker(
    businesses, celery_worker, client
):
    """The webhook stores and queues on commit; a Celery worker on Redis
    turns the stored message into a ticket."""
    import base64

    raw = fixture_path("triage", "T01.eml").read_text()
    auth = base64.b64encode(settings.ANYMAIL["WEBHOOK_SECRET"].encode()).decode()
    payload = {
        "FromFull": {"Email": "dispatch@harborplumbing.example", "Name": "Marcus"},
        "ToFull": [{"Email": "support@afterhours.example", "Name": ""}],
        "Subject": "No call summaries tonight",
        "MessageID": "c3a0c4a2-0000-4000-8000-000000000001",
        "RawEmail": raw,
    }
    with override_settings(ANYMAIL_ESP="postmark"):
        response = client.post(
            "/anymail/postmark/inbound/",
            data=payload,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Basic {auth}",
        )
    assert response.status_code == 200

    # Waits for the worker, bounded; the assertion is on the outcome only.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not Ticket.objects.exists():
        time.sleep(0.2)
    ticket = Ticket.objects.get()
    assert ticket.business.name == "Harbor Plumbing & Heating"
    assert InboundEmail.objects.get().status == InboundEmail.Status.PROCESSED
