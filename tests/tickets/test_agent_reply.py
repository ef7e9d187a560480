"""An agent's reply: never-say check, override with a logged reason, a
next-update time on every reply, threading, the outbox, and the admin form
that drives it (Django test client, a real round trip)."""

import datetime as dt
import logging
from zoneinfo import ZoneInfo

import pytest
from django.forms import MultiWidget

from intake.email import parse_email
from notifications.models import Notification
from tests.factories import BusinessFactory, TicketFactory, TicketMessageFactory
from tickets import services
from tickets.models import Ticket, TicketMessage
from tickets.services import ReplyBlocked, ReplyInvalid, ticket_reply_send

NY = ZoneInfo("America/New_York")
UTC = dt.UTC
NOW = dt.datetime(2026, 12, 8, 15, 0, tzinfo=UTC)  # Tuesday 10:00 in New York


def _ticket(priority="P1", **fields):
    business = BusinessFactory(name="Harbor Test", time_zone="America/New_York")
    defaults = {
        "business": business,
        "priority": priority,
        "requester_email": "dispatch@harbor.example",
        "requester_name": "Dana",
        "subject": "SMS delayed",
        "received_at": NOW - dt.timedelta(minutes=30),
        "acknowledge_due": NOW + dt.timedelta(minutes=30),
        "next_update_due": NOW + dt.timedelta(hours=3),
        "status": Ticket.Status.NEW,
    }
    ticket = TicketFactory(**(defaults | fields))
    TicketMessageFactory(
        ticket=ticket,
        message_id="<first@harbor.example>",
        references="",
        body="Texts are late",
        created_at=NOW - dt.timedelta(minutes=30),
    )
    TicketMessageFactory(
        ticket=ticket,
        message_id="<second@harbor.example>",
        references="<first@harbor.example>",
        in_reply_to="<first@harbor.example>",
        body="Still late",
        created_at=NOW - dt.timedelta(minutes=10),
    )
    return ticket


def _send(ticket, body, next_update_at=NOW + dt.timedelta(hours=2), **kwargs):
    return ticket_reply_send(
        ticket=ticket,
        author=kwargs.pop("author", None),
        body=body,
        next_update_at=next_update_at,
        now=NOW,
        **kwargs,
    )


# --- The service -------------------------------------------------------------


def test_a_reply_with_never_say_words_is_not_sent_and_says_which_and_why(db):
    ticket = _ticket()

    with pytest.raises(ReplyBlocked) as blocked:
        _send(ticket, "Good news: it's definitely fixed and will never happen again.")

    words = [finding.words for finding in blocked.value.findings]
    assert "it's definitely fixed" in words
    assert "never" in words
    assert all(finding.why for finding in blocked.value.findings)
    assert "it's definitely fixed" in str(blocked.value)
    assert not ticket.messages.filter(direction="out").exists()
    assert not Notification.objects.exists()


def test_sending_anyway_needs_a_reason_which_is_logged(db, caplog):
    ticket = _ticket()
    body = "We didn't get your call: the provider confirmed it never reached us."

    with caplog.at_level(logging.WARNING, logger="tickets.services"):
        message = _send(
            ticket, body, override_reason="verified in the provider's call log"
        )

    event = ticket.events.get(kind="guardrail_override")
    assert "verified in the provider's call log" in event.detail
    assert "We didn't get your call" in event.detail
    warning = next(r for r in caplog.records if "despite" in r.getMessage())
    assert warning.levelno == logging.WARNING
    assert f"ticket={ticket.pk}" in warning.getMessage()
    assert message.body.startswith(body)
    assert Notification.objects.filter(reason="ticket_reply").count() == 1


def test_a_blank_reason_does_not_count_as_one(db):
    with pytest.raises(ReplyBlocked):
        _send(_ticket(), "It's definitely fixed.", override_reason="   ")


def test_a_sent_reply_is_threaded_and_owed_in_the_outbox_once(db):
    ticket = _ticket()

    message = _send(ticket, "We're investigating the delay with our SMS provider.")

    assert message.direction == TicketMessage.Direction.OUTBOUND
    assert message.message_id.startswith("<") and message.message_id.endswith(
        "@afterhours.example>"
    )
    assert message.in_reply_to == "<second@harbor.example>"
    assert message.references.split() == [
        "<first@harbor.example>",
        "<second@harbor.example>",
    ]
    assert message.subject == f"Re: SMS delayed [{ticket.reference}]"
    email = Notification.objects.get(reason="ticket_reply")
    assert (email.channel, email.recipient) == ("email", "dispatch@harbor.example")
    assert email.ticket_id == ticket.pk
    assert email.headers == {
        "Message-ID": message.message_id,
        "In-Reply-To": "<second@harbor.example>",
        "References": "<first@harbor.example> <second@harbor.example>",
    }
    assert email.body == message.body


def test_the_customers_answer_to_an_agent_reply_joins_the_ticket(db):
    ticket = _ticket()
    message = _send(ticket, "We're investigating the delay with our SMS provider.")
    raw = (
        "From: Dana <dispatch@harbor.example>\r\nTo: support@afterhours.example\r\n"
        "Subject: Re: SMS delayed\r\nMessage-ID: <answer@harbor.example>\r\n"
        f"In-Reply-To: {message.message_id}\r\n\r\nThanks!\r\n"
    ).encode()

    assert services.ticket_find_for_email(parsed=parse_email(raw)) == ticket


def test_a_reply_acknowledges_and_sets_the_promised_next_update(db):
    ticket = _ticket(acknowledged_at=None)
    promised = NOW + dt.timedelta(hours=2)

    _send(ticket, "We're looking into it.", next_update_at=promised)

    ticket.refresh_from_db()
    assert ticket.acknowledged_at == NOW
    assert ticket.next_update_due == promised
    assert ticket.status == Ticket.Status.OPEN
    assert "next update promised by Tue Dec 8 12:00 EST" in (
        ticket.events.get(kind="reply_sent").detail
    )


def test_a_reply_names_its_next_update_time_in_the_customers_zone(db):
    ticket = _ticket()

    message = _send(ticket, "We're looking into it.")

    assert message.body.endswith("Next update by 12:00 PM EST on Tuesday, Dec 8.\n"), (
        message.body
    )


def test_a_reply_that_already_names_the_time_gets_no_second_line(db):
    ticket = _ticket()
    body = "We'll write again by 12:00 PM EST on Tuesday, Dec 8."

    message = _send(ticket, body)

    assert message.body == body + "\n"


@pytest.mark.parametrize(
    ("next_update_at", "why"),
    [
        (None, "carries a next-update time"),
        (NOW - dt.timedelta(minutes=1), "already passed"),
        # P1 is updated every 4 hours: 4 h 1 min is past the promise.
        (NOW + dt.timedelta(hours=4, minutes=1), "at the latest"),
    ],
)
def test_every_reply_carries_a_realistic_next_update_time(db, next_update_at, why):
    ticket = _ticket()

    with pytest.raises(ReplyInvalid, match=why):
        _send(ticket, "We're looking into it.", next_update_at=next_update_at)
    assert not Notification.objects.exists()


def test_a_reply_resumes_a_paused_clock(db):
    ticket = _ticket()
    services.ticket_status_change(
        ticket=ticket, status=Ticket.Status.WAITING_ON_CUSTOMER, at=NOW
    )

    _send(ticket, "We're looking into it.")

    ticket.refresh_from_db()
    assert ticket.clock_paused_at is None
    assert ticket.status == Ticket.Status.OPEN
    assert ticket.next_update_due == NOW + dt.timedelta(hours=2)


def test_a_ticket_without_an_address_cannot_be_replied_to(db):
    ticket = _ticket(requester_email="")
    with pytest.raises(ReplyInvalid, match="no address"):
        _send(ticket, "We're looking into it.")


# --- The admin form ------------------------------------------------------------


def _form_data(response) -> dict:
    """The change form as the browser would post it back, unchanged."""
    data = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management[name].html_name] = management[name].value()
        forms += list(formset.forms)
    for form in forms:
        for bound in form:
            value = bound.value()
            if value is None or value is False:
                continue
            if isinstance(bound.field.widget, MultiWidget):
                parts = bound.field.widget.decompress(value)
                for index, part in enumerate(parts):
                    data[f"{bound.html_name}_{index}"] = "" if part is None else part
            elif value is True:
                data[bound.html_name] = "on"
            else:
                data[bound.html_name] = value
    return data


@pytest.fixture
def agent(db, django_user_model):
    return django_user_model.objects.create_superuser(
        "agent", "agent@afterhours.example", "pw"
    )


@pytest.fixture
def desk(client, agent):
    client.force_login(agent)
    return client


def _url(ticket):
    return f"/admin/tickets/ticket/{ticket.pk}/change/"


def test_the_form_starts_from_a_chosen_script_rendered_for_the_ticket(db, desk):
    ticket = _ticket(received_at=dt.datetime.now(UTC))

    page = desk.get(_url(ticket), {"script": "status-identified"})

    assert page.status_code == 200
    form = page.context["adminform"].form
    body = form["reply_body"].value()
    assert body.startswith("We've identified the cause and are working on a fix.")
    assert "If needed, your on-call can place a manual callback." in body
    local = form.initial["reply_next_update"].astimezone(NY)
    assert f"Next update by {local:%I:%M %p}".replace("by 0", "by ") in body
    # Shown in the customer's zone, labelled with it.
    assert form["reply_next_update"].value() == local.replace(tzinfo=None)
    assert "Next update by (America/New_York)" in page.content.decode()


def test_a_blocked_reply_shows_the_words_and_why_and_sends_nothing(db, desk):
    ticket = _ticket(received_at=dt.datetime.now(UTC))
    data = _form_data(desk.get(_url(ticket)))
    data["reply_body"] = "This can't happen again, it's definitely fixed."

    page = desk.post(_url(ticket), data)

    assert page.status_code == 200
    errors = page.context["adminform"].form.errors["reply_body"]
    assert 'Not sent: "This can\'t happen": it just did' in errors[0]
    assert any("it's definitely fixed" in error for error in errors)
    assert not Notification.objects.filter(reason="ticket_reply").exists()


def test_send_anyway_without_a_reason_is_refused(db, desk):
    ticket = _ticket(received_at=dt.datetime.now(UTC))
    data = _form_data(desk.get(_url(ticket)))
    data |= {"reply_body": "It's definitely fixed.", "reply_send_anyway": "on"}

    page = desk.post(_url(ticket), data)

    assert page.status_code == 200
    assert "reply_override_reason" in page.context["adminform"].form.errors
    assert not Notification.objects.filter(reason="ticket_reply").exists()


def test_send_anyway_with_a_reason_sends_and_logs_it(db, desk, agent):
    ticket = _ticket(received_at=dt.datetime.now(UTC))
    data = _form_data(desk.get(_url(ticket)))
    data |= {
        "reply_body": "It's definitely fixed: the provider confirmed the patch.",
        "reply_send_anyway": "on",
        "reply_override_reason": "provider's written confirmation attached",
    }

    page = desk.post(_url(ticket), data)

    assert page.status_code == 302, page.context["adminform"].form.errors
    event = ticket.events.get(kind="guardrail_override")
    assert event.actor == agent
    assert "provider's written confirmation attached" in event.detail
    reply = ticket.messages.get(direction="out")
    assert reply.author == agent
    assert Notification.objects.get(reason="ticket_reply").recipient == (
        "dispatch@harbor.example"
    )


def test_a_clean_reply_round_trips_through_the_form(db, desk):
    ticket = _ticket(received_at=dt.datetime.now(UTC))
    page = desk.get(_url(ticket), {"script": "status-identified"})
    data = _form_data(page)

    saved = desk.post(_url(ticket), data)

    assert saved.status_code == 302
    ticket.refresh_from_db()
    reply = ticket.messages.get(direction="out")
    assert reply.body.startswith("We've identified the cause")
    sent_at = page.context["adminform"].form.initial["reply_next_update"]
    assert ticket.next_update_due == sent_at
    assert ticket.status == Ticket.Status.OPEN


def test_the_form_requires_a_next_update_time_with_a_reply(db, desk):
    ticket = _ticket(received_at=dt.datetime.now(UTC))
    data = _form_data(desk.get(_url(ticket)))
    data["reply_body"] = "We're looking into it."
    data["reply_next_update"] = ""

    page = desk.post(_url(ticket), data)

    assert page.status_code == 200
    assert "carries a next-update time" in str(
        page.context["adminform"].form.errors["reply_next_update"]
    )


def test_a_next_update_time_that_happens_twice_is_refused_not_guessed(db, desk):
    ticket = _ticket(received_at=dt.datetime.now(UTC))
    data = _form_data(desk.get(_url(ticket)))
    data |= {"reply_body": "Looking into it.", "reply_next_update": "2026-11-01 01:30"}

    page = desk.post(_url(ticket), data)

    assert page.status_code == 200
    assert "reply_next_update" in page.context["adminform"].form.errors


def test_saving_the_ticket_without_a_reply_sends_nothing(db, desk):
    ticket = _ticket(received_at=dt.datetime.now(UTC))
    data = _form_data(desk.get(_url(ticket), {"script": "status-identified"}))
    data["reply_body"] = ""

    assert desk.post(_url(ticket), data).status_code == 302
    assert not ticket.messages.filter(direction="out").exists()


def test_a_priority_change_in_admin_recomputes_the_clock_with_the_agent(
    db, desk, agent
):
    ticket = _ticket(priority="P2", received_at=dt.datetime.now(UTC))
    data = _form_data(desk.get(_url(ticket)))
    data["priority"] = "P0"

    assert desk.post(_url(ticket), data).status_code == 302

    ticket.refresh_from_db()
    assert ticket.priority == "P0"
    event = ticket.events.get(kind="sla_recomputed")
    assert event.actor == agent
    assert event.detail.startswith("P2 -> P0: changed by agent in admin.")
    assert Notification.objects.filter(ticket=ticket, reason="p0_page").exists()


def test_setting_waiting_in_admin_pauses_the_clock(db, desk):
    ticket = _ticket(received_at=dt.datetime.now(UTC))
    data = _form_data(desk.get(_url(ticket)))
    data["status"] = Ticket.Status.WAITING_ON_CUSTOMER

    assert desk.post(_url(ticket), data).status_code == 302

    ticket.refresh_from_db()
    assert ticket.clock_paused_at is not None
    page = desk.get(_url(ticket))
    assert "paused since" in page.content.decode()


def test_a_reply_saved_with_a_rise_to_p0_is_held_to_p0s_next_update(db, desk):
    """The form pre-filled a P1 time (4 h out); raising to P0 in the same
    save makes that too late: an error on the form, nothing half-done."""
    ticket = _ticket(received_at=dt.datetime.now(UTC))
    data = _form_data(desk.get(_url(ticket)))
    data |= {"reply_body": "We're looking into it.", "priority": "P0"}

    page = desk.post(_url(ticket), data)

    assert page.status_code == 200
    assert "at the latest" in str(
        page.context["adminform"].form.errors["reply_next_update"]
    )
    ticket.refresh_from_db()
    assert ticket.priority == "P1"
    assert not Notification.objects.exists()
