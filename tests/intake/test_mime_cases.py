"""The shared MIME cases (cases/README.md "Email") through ingest_email."""

import json
from io import StringIO

from django.core.management import call_command

from intake.models import InboundEmail
from notifications.models import Notification, Suppression
from tests.conftest import fixture_path
from tickets.models import Ticket, TicketAttachment, TicketMessage


def ingest(*parts) -> dict:
    out = StringIO()
    call_command("ingest_email", str(fixture_path(*parts)), "--json", stdout=out)
    return json.loads(out.getvalue())


def first_replies():
    return Notification.objects.filter(reason=Notification.Reason.FIRST_REPLY)


def test_win1252_subject_is_unfolded_and_decoded(businesses):
    result = ingest("mime", "win1252-folded-subject.eml")

    ticket = Ticket.objects.get(reference=result["ticket"])
    assert ticket.subject == "Lignes coupées – Café Nord [urgent]"


def test_win1252_body_without_charset_is_decoded_without_loss(businesses):
    result = ingest("mime", "win1252-folded-subject.eml")

    message = Ticket.objects.get(reference=result["ticket"]).messages.get(
        direction="in"
    )
    assert "“All lines dead” since 1:30 AM Eastern, Nov 1 – callers" in message.body
    assert "Business: Café Nord, main line (415) 555-0142 x22" in message.body
    assert "rebooted the router – no change." in message.body
    assert "\ufffd" not in message.body


def test_win1252_unknown_business_is_kept_for_an_agent_and_triaged_p0(businesses):
    result = ingest("mime", "win1252-folded-subject.eml")

    assert result["business"] is None
    assert result["priority"] == "P0"
    ticket = Ticket.objects.get(reference=result["ticket"])
    assert ticket.business is None
    assert ticket.requester_email == "owner@cafe-nord.example"
    assert ticket.requester_name == "Renée Okafor"


def test_win1252_line_is_e164_with_the_extension_apart(businesses):
    result = ingest("mime", "win1252-folded-subject.eml")

    ticket = Ticket.objects.get(reference=result["ticket"])
    assert ticket.business_line == "+14155550142"
    assert ticket.business_line_extension == "22"
    assert ticket.example_call == "+14155550177"


def test_win1252_ambiguous_start_time_is_asked_about_never_guessed(businesses):
    """1:30 AM on Nov 1 2026 happened twice in Eastern time."""
    result = ingest("mime", "win1252-folded-subject.eml")

    assert "started_at" in result["missing"]
    ticket = Ticket.objects.get(reference=result["ticket"])
    assert ticket.started_at is None or ticket.started_at_unclear
    body = first_replies().get(ticket=ticket).body
    assert "first 1:30 AM (EDT)" in body
    assert "second 1:30 AM (EST)" in body


def test_autoreply_to_first_reply_gets_no_reply_and_opens_no_ticket(businesses):
    t02 = ingest("triage", "T02.eml")
    replies_before = Notification.objects.count()

    result = ingest("mime", "autoreply-ooo.eml")

    assert Ticket.objects.count() == 1
    assert Notification.objects.count() == replies_before
    assert result["first_reply_sent"] is False
    note = TicketMessage.objects.get(direction=TicketMessage.Direction.NOTE)
    assert note.ticket.reference == t02["ticket"]
    inbound = InboundEmail.objects.get(message_id="<ooo-7f3a91@cedarridgevet.example>")
    assert inbound.status == InboundEmail.Status.IGNORED


def test_autoreply_to_an_unknown_ticket_leaves_no_trace_but_the_inbox(businesses):
    result = ingest("mime", "autoreply-ooo.eml")

    assert result["ticket"] is None
    assert result["thread"] == "none"
    assert not Ticket.objects.exists()
    assert not Notification.objects.exists()
    assert InboundEmail.objects.get().status == InboundEmail.Status.IGNORED


def test_bounce_marks_the_failed_address_and_gets_no_reply(businesses):
    result = ingest("mime", "bounce-dsn.eml")

    assert result["ticket"] is None
    assert not Ticket.objects.exists()
    assert not Notification.objects.exists()
    suppression = Suppression.objects.get()
    assert suppression.channel == "email"
    assert suppression.address == "oncall-old@cedarridgevet.example"
    assert suppression.sender == ""


def test_reply_joins_t02_by_references_and_completes_the_facts(businesses):
    t02 = ingest("triage", "T02.eml")
    assert t02["missing"]

    result = ingest("mime", "reply-completes-facts.eml")

    assert result["ticket"] == t02["ticket"]
    assert result["thread"] == "reply"
    assert result["missing"] == []
    ticket = Ticket.objects.get()
    assert ticket.business_line == "+13125550118"
    assert ticket.example_call == "+17085550140"
    assert ticket.events.filter(kind="facts_filled").exists()


def test_reply_gets_no_second_first_reply(businesses):
    ingest("triage", "T02.eml")

    result = ingest("mime", "reply-completes-facts.eml")

    assert result["first_reply_sent"] is False
    assert first_replies().count() == 1


def test_reply_keeps_what_was_known(businesses):
    """T02's symptoms came with the first message; the reply keeps them."""
    ingest("triage", "T02.eml")
    symptoms = Ticket.objects.get().symptoms
    assert symptoms

    ingest("mime", "reply-completes-facts.eml")

    assert Ticket.objects.get().symptoms == symptoms


def test_attachment_only_opens_ticket_with_the_pdf_and_an_empty_body(businesses):
    result = ingest("mime", "attachment-only.eml")

    ticket = Ticket.objects.get(reference=result["ticket"])
    message = ticket.messages.get(direction=TicketMessage.Direction.INBOUND)
    assert message.body == ""
    attachment = TicketAttachment.objects.get(message=message)
    assert attachment.filename == "outage.pdf"
    assert attachment.content_type == "application/pdf"
    with attachment.file.open("rb") as handle:
        content = handle.read()
    assert content.startswith(b"%PDF-1.4")
    assert attachment.size == len(content)


def test_attachment_only_first_reply_asks_for_all_five_facts(businesses):
    from tickets import scripts

    result = ingest("mime", "attachment-only.eml")

    assert result["missing"] == [
        "business_line",
        "started_at",
        "symptoms",
        "example_call",
        "workaround",
    ]
    body = first_replies().get().body
    for question in scripts.MISSING_FACT_QUESTIONS.values():
        assert question in body


def test_bounce_of_our_first_reply_is_noted_on_its_ticket(businesses):
    """The DSN returns our reply's headers; the failed address is marked and
    the agent sees the bounce on the ticket, with no reply to it."""
    t02 = ingest("triage", "T02.eml")
    ours = first_replies().get().headers["Message-ID"]
    dsn = fixture_path("mime", "bounce-dsn.eml").read_text()
    dsn = dsn.replace(
        "--b1--",
        "--b1\nContent-Type: text/rfc822-headers\n\n"
        f"From: support@afterhours.example\nMessage-ID: {ours}\n"
        "Subject: Re: Summary formatting looks off\n\n--b1--",
    )
    from intake.services import inbound_email_process, inbound_email_store

    inbound_email, _ = inbound_email_store(raw=dsn.encode(), esp="test")
    result = inbound_email_process(inbound_email_id=inbound_email.pk)

    assert result.ticket == t02["ticket"]
    assert Ticket.objects.count() == 1
    assert first_replies().count() == 1
    assert TicketMessage.objects.filter(direction="note").count() == 1
    assert Suppression.objects.filter(
        address="oncall-old@cedarridgevet.example"
    ).exists()
