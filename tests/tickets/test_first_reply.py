"""The first reply: script, next-update time, questions, headers, P0 page."""

import datetime as dt
import re

import pytest
from django.conf import settings
from django.test import override_settings

from intake.services import inbound_email_process, inbound_email_store
from notifications.models import Notification
from tests.conftest import fixture_path
from tickets import scripts
from tickets.guardrail import check_outgoing
from tickets.models import Ticket, TicketMessage

T01_DATE = dt.datetime(2026, 12, 8, 3, 52, tzinfo=dt.UTC)


def ingest_raw(raw: bytes, received_at=None):
    inbound_email, _ = inbound_email_store(
        raw=raw, esp="test", received_at=received_at or dt.datetime.now(dt.UTC)
    )
    return inbound_email_process(inbound_email_id=inbound_email.pk)


def ingest_case(name: str, received_at=None):
    from intake.email import parse_email

    raw = fixture_path("triage", name).read_bytes()
    return ingest_raw(raw, received_at or parse_email(raw).date)


def make_email(
    *,
    sender="Dana <dispatch@harborplumbing.example>",
    subject="Calls missing",
    body="Hello",
    message_id=None,
    extra="",
) -> bytes:
    message_id = message_id or f"<{abs(hash((subject, body, extra)))}@mail.example>"
    return (
        f"From: {sender}\r\nTo: support@afterhours.example\r\n"
        f"Subject: {subject}\r\nDate: Tue, 08 Dec 2026 15:00:00 +0000\r\n"
        f"Message-ID: {message_id}\r\n{extra}"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def first_reply(ticket) -> Notification:
    return Notification.objects.get(
        ticket=ticket, reason=Notification.Reason.FIRST_REPLY
    )


def test_p0_first_reply_is_the_field_guide_script_with_next_update_time(businesses):
    """T01 came in at 03:52 UTC: P0 updates every 30 min, 11:22 PM Eastern."""
    ingest_case("T01.eml")

    ticket = Ticket.objects.get()
    assert ticket.next_update_due == T01_DATE + dt.timedelta(minutes=30)
    body = first_reply(ticket).body
    assert scripts.ACKNOWLEDGEMENT["P0"].format(time="11:22 PM EST") in body
    assert "We're actively investigating and will update you by 11:22 PM EST." in body


def test_first_reply_with_nothing_missing_asks_no_question(businesses):
    ingest_case("T01.eml")

    body = first_reply(Ticket.objects.get()).body
    assert scripts.MISSING_FACTS_INTRO not in body
    assert "?" not in body


def test_first_reply_asks_exactly_the_missing_facts_one_question_each(businesses):
    """T02 gave symptoms only: four questions, the symptoms one not asked."""
    result = ingest_case("T02.eml")

    body = first_reply(Ticket.objects.get()).body
    questions = [line for line in body.splitlines() if line.startswith("- ")]
    assert len(questions) == len(result.missing) == 4
    for fact in result.missing:
        assert f"- {scripts.MISSING_FACT_QUESTIONS[fact]}" in questions
    assert scripts.MISSING_FACT_QUESTIONS["symptoms"] not in body


def test_p2_first_reply_is_calm_and_promises_a_next_update(businesses):
    ingest_case("T02.eml")

    ticket = Ticket.objects.get()
    assert ticket.priority == "P2"
    body = first_reply(ticket).body
    assert scripts.ACKNOWLEDGEMENT["P0"].split(".")[0] not in body
    assert "We'll update you by " in body
    local = ticket.next_update_due.astimezone(ticket.business.zone)
    assert f"{local:%I:%M %p}".lstrip("0") + f" {local:%Z}" in body


def test_first_reply_subject_headers_and_stored_outbound_message(businesses):
    ingest_case("T01.eml")

    ticket = Ticket.objects.get()
    reply = first_reply(ticket)
    assert reply.channel == "email"
    assert reply.recipient == "dispatch@harborplumbing.example"
    assert reply.subject == f"Re: No call summaries tonight [{ticket.reference}]"
    headers = reply.headers
    assert re.fullmatch(r"<[^<>@\s]+@afterhours\.example>", headers["Message-ID"])
    assert headers["In-Reply-To"] == "<t01.20261204@mail.example>"
    assert "<t01.20261204@mail.example>" in headers["References"].split()
    assert headers["Auto-Submitted"] == "auto-replied"
    outbound = ticket.messages.get(direction=TicketMessage.Direction.OUTBOUND)
    assert outbound.message_id == headers["Message-ID"]
    assert outbound.in_reply_to == "<t01.20261204@mail.example>"
    assert ticket.events.filter(kind="first_reply_queued").exists()


@pytest.mark.parametrize("name", ["T01.eml", "T02.eml", "T03.eml", "T05.eml"])
def test_first_reply_says_nothing_from_the_never_say_list(businesses, name):
    ingest_case(name)

    body = first_reply(Ticket.objects.get()).body

    assert check_outgoing(body) == []


def test_replayed_message_gets_one_first_reply(businesses):
    ingest_case("T01.eml")
    ingest_case("T01.eml")

    assert Ticket.objects.count() == 1
    assert Notification.objects.filter(reason="first_reply").count() == 1


def test_reply_threads_by_our_outbound_message_id(businesses):
    ingest_case("T01.eml")
    ticket = Ticket.objects.get()
    ours = first_reply(ticket).headers["Message-ID"]

    result = ingest_raw(
        make_email(
            subject="Re: something else",
            body="Still nothing.",
            extra=(f"In-Reply-To: {ours}\r\n"),
        )
    )

    assert result.ticket == ticket.reference
    assert result.thread == "reply"
    assert Ticket.objects.count() == 1


def test_subject_tag_joins_only_for_a_sender_of_that_business(businesses):
    ingest_case("T01.eml")
    ticket = Ticket.objects.get()
    tagged = f"Re: No call summaries tonight [{ticket.reference}]"

    stranger = ingest_raw(
        make_email(sender="x@elsewhere.example", subject=tagged, body="Me too.")
    )
    on_call = ingest_raw(
        make_email(sender="dana@harborplumbing.example", subject=tagged, body="Hi.")
    )

    assert stranger.ticket != ticket.reference
    assert stranger.thread == "new"
    assert on_call.ticket == ticket.reference
    assert on_call.thread == "reply"


def test_a_reply_never_lowers_priority_by_itself(businesses):
    ingest_case("T01.eml")
    ticket = Ticket.objects.get()
    assert ticket.priority == "P0"

    ingest_raw(
        make_email(
            body="Just a small formatting thing otherwise, not urgent.",
            extra=f"In-Reply-To: {first_reply(ticket).headers['Message-ID']}\r\n",
        )
    )

    assert Ticket.objects.get().priority == "P0"


def test_p0_pages_first_on_call_and_support_on_call_by_sms(businesses):
    ingest_case("T01.eml")

    ticket = Ticket.objects.get()
    pages = Notification.objects.filter(reason=Notification.Reason.P0_PAGE)
    assert {page.recipient for page in pages} == {
        "+16175550177",
        settings.SUPPORT_ONCALL_PHONE,
    }
    for page in pages:
        assert page.channel == "sms"
        assert page.dedupe_key == f"p0_page:{ticket.pk}:sms:{page.recipient}"
        assert ticket.reference in page.body
        assert "Harbor Plumbing & Heating" in page.body
        # No customer personal data: not the caller's number, not a name.
        assert "0199" not in page.body
        assert "Marcus" not in page.body
    assert ticket.events.filter(kind="p0_paged").exists()


def test_p0_page_is_owed_once_per_number(businesses):
    from tickets.services import p0_page_queue

    ingest_case("T01.eml")

    assert p0_page_queue(ticket=Ticket.objects.get()) == []
    assert Notification.objects.filter(reason="p0_page").count() == 2


def test_p2_ticket_pages_nobody(businesses):
    ingest_case("T02.eml")

    assert not Notification.objects.filter(reason="p0_page").exists()


@override_settings(AUTO_REPLY_LIMIT_PER_HOUR=2)
def test_automatic_replies_to_one_sender_are_capped_per_hour(businesses):
    for n in range(3):
        ingest_raw(make_email(subject=f"Problem {n}", body=f"Report {n}"))

    assert Ticket.objects.count() == 3
    assert Notification.objects.filter(reason="first_reply").count() == 2
    withheld = Ticket.objects.filter(events__kind="first_reply_withheld")
    assert withheld.count() == 1


def test_mail_from_our_own_support_address_opens_nothing(businesses):
    result = ingest_raw(make_email(sender=settings.SUPPORT_EMAIL, body="Loop?"))

    assert result.ticket is None
    assert not Ticket.objects.exists()
    assert not Notification.objects.exists()


def test_a_reply_that_shows_an_outage_raises_priority_and_pages(businesses):
    ingest_case("T02.eml")
    ticket = Ticket.objects.get()
    assert ticket.priority == "P2"

    ingest_raw(
        make_email(
            sender="Front Desk <frontdesk@cedarridgevet.example>",
            subject="Re: Summary formatting looks off",
            body=(
                "Update: since 9 PM tonight we get no texts and no call "
                "summaries at all. Our on-call has not been paged."
            ),
            extra=f"In-Reply-To: {first_reply(ticket).headers['Message-ID']}\r\n",
        ),
        received_at=dt.datetime(2026, 12, 10, 4, 0, tzinfo=dt.UTC),
    )

    ticket.refresh_from_db()
    assert ticket.priority == "P0"
    assert ticket.events.filter(kind="triaged", detail__startswith="raised").exists()
    assert Notification.objects.filter(reason="p0_page", ticket=ticket).count() == 2
    assert Notification.objects.filter(reason="first_reply").count() == 1
    assert ticket.next_update_due <= dt.datetime(2026, 12, 10, 4, 30, tzinfo=dt.UTC)
