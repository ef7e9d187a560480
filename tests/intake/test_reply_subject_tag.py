"""A reply's subject always ends with the ticket's tag, however long.

From a new-user trial: a 1,500-character subject was cut at 998 characters
after the tag was added, so the first reply lost `[AH-1007]` and the
customer's answer could no longer thread by subject.
"""

import datetime as dt
import json
import re
from io import StringIO

from django.core.management import call_command
from django.utils import timezone

from notifications.models import Notification
from tickets.models import Ticket
from tickets.services import ticket_reply_send

LONG_SUBJECT = "Calls not answered " + "and still nothing from the on-call line " * 40


def ingest(raw: bytes, tmp_path) -> dict:
    path = tmp_path / "message.eml"
    path.write_bytes(raw)
    out = StringIO()
    call_command("ingest_email", str(path), "--json", stdout=out)
    return json.loads(out.getvalue())


def long_subject_email() -> bytes:
    return (
        "From: Dana <dispatch@harborplumbing.example>\r\n"
        "To: support@afterhours.example\r\n"
        f"Subject: {LONG_SUBJECT}\r\n"
        "Date: Tue, 08 Dec 2026 03:52:00 +0000\r\n"
        "Message-ID: <long-subject@harborplumbing.example>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Our line 617-555-0142 stopped sending texts at 9:30 PM ET.\r\n"
    ).encode()


def test_first_reply_to_a_very_long_subject_keeps_the_tag(businesses, tmp_path):
    assert len(LONG_SUBJECT) > 1000

    result = ingest(long_subject_email(), tmp_path)

    reply = Notification.objects.get(reason=Notification.Reason.FIRST_REPLY)
    assert reply.subject.endswith(f" [{result['ticket']}]")
    assert reply.subject.startswith("Re: Calls not answered and still nothing")
    assert len(reply.subject) <= 998
    assert "…" in reply.subject


def test_agent_reply_to_a_very_long_subject_keeps_the_tag(businesses, tmp_path):
    ingest(long_subject_email(), tmp_path)
    ticket = Ticket.objects.get()

    message = ticket_reply_send(
        ticket=ticket,
        author=None,
        body="We are looking into the texts from your line now.",
        next_update_at=timezone.now() + dt.timedelta(minutes=20),
    )

    assert message.subject.endswith(f" [{ticket.reference}]")
    assert len(message.subject) <= 998


def test_first_reply_to_a_usual_subject_is_unchanged(businesses, tmp_path):
    raw = long_subject_email().replace(LONG_SUBJECT.encode(), b"No texts since 9:30 PM")

    result = ingest(raw, tmp_path)

    reply = Notification.objects.get(reason=Notification.Reason.FIRST_REPLY)
    assert reply.subject == f"Re: No texts since 9:30 PM [{result['ticket']}]"
    assert re.fullmatch(r"AH-\d+", result["ticket"])
