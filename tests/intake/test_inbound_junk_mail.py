"""Bad MIME is read as far as it can be; junk is set aside, never a ticket.

From a new-user trial: a multipart message with no boundary lost its whole
body; 20 KB of random bytes and an empty file each became a ticket with a
garbage body; a Latin-1 subject labelled UTF-8 read "caf\ufffd line down".
"""

import json
import random
from io import StringIO

import pytest
from django.core.management import call_command

from intake.email import decode_header_text, parse_email
from intake.models import InboundEmail
from intake.services import inbound_email_process, inbound_email_store
from notifications.models import Notification
from tests.conftest import fixture_path
from tickets.models import Ticket

HEAD = (
    b"From: Dana <dispatch@harborplumbing.example>\r\n"
    b"To: support@afterhours.example\r\n"
    b"Subject: Line down\r\n"
    b"Date: Tue, 08 Dec 2026 03:52:00 +0000\r\n"
    b"Message-ID: <junk-1@harborplumbing.example>\r\n"
    b"MIME-Version: 1.0\r\n"
)
BODY = b"Calls not being answered at all on 617-555-0142 since 9:30 PM ET.\r\n"


def ingest(raw: bytes, tmp_path) -> dict:
    path = tmp_path / "message.eml"
    path.write_bytes(raw)
    out = StringIO()
    call_command("ingest_email", str(path), "--json", stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (b"multipart/mixed", BODY),
        (b'multipart/mixed; boundary="declared-but-absent"', BODY),
        (
            b"multipart/alternative",
            b"--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            + BODY
            + b"--inner--\r\n",
        ),
        (
            b'multipart/mixed; boundary="wrong"',
            b"--right\r\nContent-Type: text/plain\r\n\r\n" + BODY + b"--right--\r\n",
        ),
    ],
    ids=["no-boundary", "absent-boundary", "undeclared-parts", "wrong-boundary"],
)
def test_multipart_without_a_usable_boundary_keeps_its_text(content_type, body):
    raw = HEAD + b"Content-Type: " + content_type + b"\r\n\r\n" + body

    parsed = parse_email(raw)

    assert "Calls not being answered at all" in parsed.text
    assert "--inner" not in parsed.text and "--right" not in parsed.text
    assert "Content-Type" not in parsed.text
    assert not parsed.malformed


def test_multipart_without_a_boundary_opens_a_p0_ticket(businesses, tmp_path):
    raw = HEAD + b"Content-Type: multipart/mixed\r\n\r\n" + BODY

    result = ingest(raw, tmp_path)

    assert result["priority"] == "P0"
    message = Ticket.objects.get().messages.get(direction="in")
    assert "Calls not being answered at all" in message.body


def test_broken_boundary_still_keeps_an_attachment():
    raw = (
        HEAD
        + b"Content-Type: multipart/mixed\r\n\r\n--zz\r\nContent-Type: text/plain\r\n"
        b"\r\n" + BODY + b"--zz\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="log.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--zz--\r\n"
    )

    parsed = parse_email(raw)

    assert [a.filename for a in parsed.attachments] == ["log.pdf"]
    assert parsed.attachments[0].content == b"%PDF-1.4\n"
    assert "Calls not being answered" in parsed.text


def junk_bytes() -> bytes:
    return random.Random(20261208).randbytes(20 * 1024)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "empty"),
        (b"\r\n\r\n  \r\n", "empty"),
        (junk_bytes(), "no headers"),
        (b"Calls not being answered at all\r\n", "no headers"),
        (
            HEAD.replace(b"From: Dana <dispatch@harborplumbing.example>\r\n", b"")
            + b"\r\n"
            + BODY,
            "no sender",
        ),
        (
            HEAD.replace(b"<dispatch@harborplumbing.example>", b"") + b"\r\n" + BODY,
            "no sender",
        ),
    ],
    ids=[
        "empty",
        "blank-lines",
        "random-20kb",
        "text-only",
        "no-from",
        "from-no-address",
    ],
)
def test_junk_is_set_aside_with_its_reason_never_a_ticket(
    businesses, tmp_path, raw, why
):
    result = ingest(raw, tmp_path)

    assert result["ticket"] is None
    assert result["first_reply_sent"] is False
    row = InboundEmail.objects.get()
    assert row.status == InboundEmail.Status.REJECTED
    assert why in row.reason
    assert not Ticket.objects.exists()
    assert not Notification.objects.exists()


def test_junk_posted_twice_is_one_row(db):
    for _ in range(2):
        inbound_email_store(raw=junk_bytes(), esp="postmark")

    assert InboundEmail.objects.count() == 1


def test_junk_stored_before_this_check_is_rejected_when_processed(businesses):
    """A row stored pending (an older release) is checked again."""
    row, _ = inbound_email_store(raw=junk_bytes(), esp="file")
    InboundEmail.objects.filter(pk=row.pk).update(
        status=InboundEmail.Status.PENDING, reason=""
    )

    result = inbound_email_process(inbound_email_id=row.pk)

    assert result.ticket is None
    row.refresh_from_db()
    assert row.status == InboundEmail.Status.REJECTED
    assert not Ticket.objects.exists()


def test_attachment_only_message_still_opens_a_ticket(businesses, tmp_path):
    raw = fixture_path("mime", "attachment-only.eml").read_bytes()

    result = ingest(raw, tmp_path)

    assert result["ticket"]
    assert Ticket.objects.get().messages.get(direction="in").body == ""


# --- Header words -----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("=?utf-8?q?caf=E9_line_down?=", "café line down"),
        ("=?UTF-8?B?Y2Fm6SBsaW5lIGRvd24=?=", "café line down"),
        ("=?utf-8?q?caf=C3=A9?= line down", "café line down"),
        ("=?iso-8859-1?q?caf=E9?= =?iso-8859-1?q?_line_down?=", "café line down"),
        # One UTF-8 character split across two words (some clients do this).
        ("=?utf-8?q?caf=C3?= =?utf-8?q?=A9_line_down?=", "café line down"),
        ("=?x-unknown?q?caf=E9?= line", "café line"),
        (
            "=?windows-1252?q?Lignes_coup=E9es_=96_Caf=E9_Nor?=\r\n"
            " =?windows-1252?q?d_=5Burgent=5D?=",
            "Lignes coupées – Café Nord [urgent]",
        ),
        ("caf\udce9 line down", "café line down"),
        ("caf\udcc3\udca9 line down", "café line down"),
        ("=?utf-8?q?broken", "=?utf-8?q?broken"),
        ("=?utf-8?b?!!!?= x", "=?utf-8?b?!!!?= x"),
        ("plain\r\n folded", "plain folded"),
    ],
)
def test_header_words_decode_with_the_body_fallback_chain(raw, expected):
    assert decode_header_text(raw) == expected


def test_latin1_subject_labelled_utf8_reads_right(businesses, tmp_path):
    raw = (
        HEAD.replace(b"Subject: Line down", b"Subject: =?utf-8?q?caf=E9_line_down?=")
        + b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + BODY
    )

    result = ingest(raw, tmp_path)

    ticket = Ticket.objects.get(reference=result["ticket"])
    assert ticket.subject == "café line down"
    reply = Notification.objects.get(reason=Notification.Reason.FIRST_REPLY)
    assert "café line down" in reply.subject


def test_8bit_latin1_display_name_reads_right():
    raw = HEAD.replace(b"From: Dana", b"From: Ren\xe9e Okafor") + b"\r\n" + BODY

    parsed = parse_email(raw)

    assert parsed.from_name == "Renée Okafor"
    assert parsed.from_address == "dispatch@harborplumbing.example"


def test_decoded_subject_with_a_line_break_is_still_rejected():
    raw = (
        HEAD.replace(
            b"Subject: Line down", b"Subject: =?utf-8?q?Line=0D=0ABcc:_x@evil.example?="
        )
        + b"\r\n"
        + BODY
    )

    assert "line break" in parse_email(raw).malformed
