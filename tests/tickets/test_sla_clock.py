"""The SLA clock: it stops while we wait on the customer, starts again with
what was left, and a priority change recomputes the due times, each step on
the ticket's history. Clocks are frozen or passed in; nothing here waits."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine

from notifications.models import Notification
from tests.factories import BusinessFactory, TicketFactory
from tests.tickets.test_first_reply import ingest_case, ingest_raw, make_email
from tickets.models import Ticket
from tickets.services import ticket_priority_change, ticket_status_change

NY = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
UTC = dt.UTC


def _utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


def _ticket(priority, received_at, **fields):
    """A ticket as it stands after its first reply: acknowledged, dues set."""
    from tickets.sla import due_times

    business = fields.pop("business", None) or BusinessFactory(
        time_zone="America/New_York", open_days=[0, 1, 2, 3, 4]
    )
    due = due_times(priority=priority, received_at=received_at, business=business)
    defaults = {
        "business": business,
        "priority": priority,
        "received_at": received_at,
        "acknowledge_due": due.acknowledge_by,
        "acknowledged_at": received_at,
        "next_update_due": due.next_update_by,
        "status": Ticket.Status.OPEN,
    }
    return TicketFactory(**(defaults | fields))


# --- Pause and resume ---------------------------------------------------------


def test_waiting_for_missing_facts_pauses_the_clock_and_says_so(businesses):
    """T02 (P2, Cedar Ridge, Chicago) asks for four facts at 09:10 CT on a
    Wednesday: the clock stops with a whole business day (10 open hours)
    left on the next update."""
    received = _utc(2026, 12, 9, 15, 10)
    with time_machine.travel(received, tick=False):
        ingest_case("T02.eml")

    ticket = Ticket.objects.get()
    assert ticket.status == Ticket.Status.WAITING_ON_CUSTOMER
    assert ticket.clock_paused_at == received
    assert ticket.next_update_remaining == dt.timedelta(hours=10)
    event = ticket.events.get(kind="clock_paused")
    assert "waiting on the customer for business_line, started_at" in event.detail
    assert "next update 10 h" in event.detail


def test_the_customers_answer_resumes_the_clock_with_what_was_left(businesses):
    """Paused Wednesday 09:10 CT with 10 open hours left; the answer comes
    Friday 14:00 CT: 4 hours on Friday, 6 on Monday, due Monday 14:00 CT."""
    with time_machine.travel(_utc(2026, 12, 9, 15, 10), tick=False):
        ingest_case("T02.eml")
    ticket = Ticket.objects.get()
    answer_at = dt.datetime(2026, 12, 11, 14, 0, tzinfo=CHICAGO)

    with time_machine.travel(answer_at, tick=False):
        ingest_raw(
            make_email(
                sender="Front Desk <frontdesk@cedarridgevet.example>",
                subject=f"Re: Summary formatting looks off [{ticket.reference}]",
                body="Thanks. It is our main line, +1 312 555 0118.",
                extra="In-Reply-To: <t02.20261204@mail.example>\r\n",
            ),
            received_at=answer_at,
        )

    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.OPEN
    assert ticket.priority == "P2"
    assert ticket.clock_paused_at is None
    assert ticket.next_update_due == dt.datetime(2026, 12, 14, 14, 0, tzinfo=CHICAGO)
    assert ticket.clock_paused_total == dt.timedelta(days=2, hours=4, minutes=50)
    resumed = ticket.events.get(kind="clock_resumed")
    assert "the customer replied" in resumed.detail
    assert "next update by Mon Dec 14 14:00 CST" in resumed.detail


def test_a_p1_paused_by_an_agent_keeps_its_wall_clock_remainder(db):
    """Next update due 14:00; paused 11:00 (3 h left); resumed 15:30: due
    18:30. The 4.5 hours stopped are added to the paused total."""
    ticket = _ticket("P1", _utc(2026, 12, 8, 10, 0))
    assert ticket.next_update_due == _utc(2026, 12, 8, 14, 0)

    ticket_status_change(
        ticket=ticket,
        status=Ticket.Status.WAITING_ON_CUSTOMER,
        at=_utc(2026, 12, 8, 11),
    )
    ticket.refresh_from_db()
    assert ticket.clock_paused_at == _utc(2026, 12, 8, 11, 0)
    assert ticket.next_update_remaining == dt.timedelta(hours=3)

    ticket_status_change(
        ticket=ticket, status=Ticket.Status.OPEN, at=_utc(2026, 12, 8, 15, 30)
    )
    ticket.refresh_from_db()
    assert ticket.clock_paused_at is None
    assert ticket.next_update_due == _utc(2026, 12, 8, 18, 30)
    assert ticket.clock_paused_total == dt.timedelta(hours=4, minutes=30)
    kinds = list(ticket.events.values_list("kind", flat=True))
    assert kinds == [
        "clock_paused",
        "status_changed",
        "clock_resumed",
        "status_changed",
    ]


def test_a_clock_already_late_when_paused_is_late_when_it_resumes(db):
    ticket = _ticket("P1", _utc(2026, 12, 8, 10, 0))
    ticket_status_change(
        ticket=ticket,
        status=Ticket.Status.WAITING_ON_CUSTOMER,
        at=_utc(2026, 12, 8, 15),
    )
    ticket_status_change(ticket=ticket, status=Ticket.Status.OPEN, at=_utc(2026, 12, 9))

    ticket.refresh_from_db()
    assert ticket.next_update_due == _utc(2026, 12, 9)


def test_an_unacknowledged_ticket_keeps_its_acknowledge_remainder_too(db):
    ticket = _ticket("P1", _utc(2026, 12, 8, 10, 0), acknowledged_at=None)
    ticket_status_change(
        ticket=ticket,
        status=Ticket.Status.WAITING_ON_CUSTOMER,
        at=_utc(2026, 12, 8, 10, 20),
    )
    ticket_status_change(
        ticket=ticket, status=Ticket.Status.OPEN, at=_utc(2026, 12, 8, 12, 0)
    )

    ticket.refresh_from_db()
    assert ticket.acknowledge_due == _utc(2026, 12, 8, 12, 40)
    assert ticket.next_update_due == _utc(2026, 12, 8, 15, 40)


def test_a_p0_waiting_on_the_customer_keeps_the_clock_running(db):
    """An outage on our side is updated whether or not they answer."""
    ticket = _ticket("P0", _utc(2026, 12, 8, 3, 0))
    ticket_status_change(
        ticket=ticket,
        status=Ticket.Status.WAITING_ON_CUSTOMER,
        at=_utc(2026, 12, 8, 3, 5),
    )

    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.WAITING_ON_CUSTOMER
    assert ticket.clock_paused_at is None
    assert ticket.next_update_due == _utc(2026, 12, 8, 3, 30)
    assert "the clock keeps running" in ticket.events.get(kind="clock_running").detail


def test_reopening_a_resolved_ticket_owes_an_update_within_its_period(db):
    ticket = _ticket("P1", _utc(2026, 12, 8, 10, 0), status=Ticket.Status.RESOLVED)
    ticket_status_change(
        ticket=ticket, status=Ticket.Status.OPEN, at=_utc(2026, 12, 10)
    )

    ticket.refresh_from_db()
    assert ticket.next_update_due == _utc(2026, 12, 10, 4, 0)
    assert ticket.events.filter(kind="sla_recomputed", detail__contains="reopened")


# --- Priority changes ----------------------------------------------------------


def test_raising_priority_recomputes_due_times_pages_and_says_why(db):
    """P2 raised to P0 at 20:00 UTC, not yet acknowledged: acknowledge by
    20:10, next update by 20:30; on-call paged once."""
    ticket = _ticket("P2", _utc(2026, 12, 8, 15, 0), acknowledged_at=None)
    agent = None

    ticket_priority_change(
        ticket=ticket,
        priority="P0",
        reason="customer called: no summaries at all",
        actor=agent,
        at=_utc(2026, 12, 8, 20, 0),
    )

    ticket.refresh_from_db()
    assert ticket.priority == "P0"
    assert ticket.acknowledge_due == _utc(2026, 12, 8, 20, 10)
    assert ticket.next_update_due == _utc(2026, 12, 8, 20, 30)
    event = ticket.events.get(kind="sla_recomputed")
    assert event.detail.startswith("P2 -> P0: customer called: no summaries at all.")
    assert "next update by Tue Dec 8 15:30 EST" in event.detail
    assert Notification.objects.filter(ticket=ticket, reason="p0_page").exists()


def test_a_raise_keeps_an_earlier_promise(db):
    """Next update was promised for 10:20; a rise to P1 at 10:00 (due 14:00
    on its own) keeps 10:20."""
    ticket = _ticket(
        "P2", _utc(2026, 12, 8, 9, 0), next_update_due=_utc(2026, 12, 8, 10, 20)
    )
    ticket_priority_change(
        ticket=ticket, priority="P1", reason="partial", at=_utc(2026, 12, 8, 10)
    )

    ticket.refresh_from_db()
    assert ticket.next_update_due == _utc(2026, 12, 8, 10, 20)


def test_lowering_priority_counts_the_new_period_from_the_change(db):
    """P0 lowered to P2 on Tuesday 10:00 ET: next update by Wednesday 10:00."""
    ticket = _ticket("P0", dt.datetime(2026, 12, 8, 9, 50, tzinfo=NY))
    ticket_priority_change(
        ticket=ticket,
        priority="P2",
        reason="cosmetic after all",
        at=dt.datetime(2026, 12, 8, 10, 0, tzinfo=NY),
    )

    ticket.refresh_from_db()
    assert ticket.next_update_due == dt.datetime(2026, 12, 9, 10, 0, tzinfo=NY)
    assert (
        "P0 -> P2: cosmetic after all"
        in ticket.events.get(kind="sla_recomputed").detail
    )


def test_a_priority_change_on_a_paused_clock_leaves_it_paused_in_new_terms(db):
    """A paused P2 raised to P1: still waiting, 4 wall-clock hours left."""
    ticket = _ticket("P2", dt.datetime(2026, 12, 8, 9, 0, tzinfo=NY))
    ticket_status_change(
        ticket=ticket,
        status=Ticket.Status.WAITING_ON_CUSTOMER,
        at=dt.datetime(2026, 12, 8, 9, 30, tzinfo=NY),
    )
    ticket_priority_change(
        ticket=ticket,
        priority="P1",
        reason="fallback email only",
        at=dt.datetime(2026, 12, 8, 11, 0, tzinfo=NY),
    )

    ticket.refresh_from_db()
    assert ticket.clock_paused_at == dt.datetime(2026, 12, 8, 11, 0, tzinfo=NY)
    assert ticket.next_update_remaining == dt.timedelta(hours=4)


def test_a_rise_to_p0_starts_a_paused_clock(db):
    ticket = _ticket("P2", _utc(2026, 12, 8, 15, 0))
    ticket_status_change(
        ticket=ticket,
        status=Ticket.Status.WAITING_ON_CUSTOMER,
        at=_utc(2026, 12, 8, 16),
    )
    ticket_priority_change(
        ticket=ticket, priority="P0", reason="outage", at=_utc(2026, 12, 8, 17, 0)
    )

    ticket.refresh_from_db()
    assert ticket.clock_paused_at is None
    assert ticket.next_update_due == _utc(2026, 12, 8, 17, 30)


def test_triage_of_a_reply_that_raises_priority_recomputes_the_clock(businesses):
    """T02 waits paused; the customer's reply shows an outage: the clock
    resumes, the P0 promise counts from the reply, the history says why."""
    with time_machine.travel(_utc(2026, 12, 9, 15, 10), tick=False):
        ingest_case("T02.eml")
    ticket = Ticket.objects.get()
    reply_at = _utc(2026, 12, 10, 4, 0)

    ingest_raw(
        make_email(
            sender="Front Desk <frontdesk@cedarridgevet.example>",
            subject="Re: Summary formatting looks off",
            body="Update: since 9 PM tonight we get no texts and no call "
            "summaries at all. Our on-call has not been paged.",
            extra="In-Reply-To: <t02.20261204@mail.example>\r\n",
        ),
        received_at=reply_at,
    )

    ticket.refresh_from_db()
    assert ticket.priority == "P0"
    assert ticket.clock_paused_at is None
    assert ticket.next_update_due == reply_at + dt.timedelta(minutes=30)
    event = ticket.events.get(kind="sla_recomputed")
    assert event.detail.startswith("P2 -> P0: triage of the customer's reply.")


# --- Frozen clocks: Friday evening and the DST days of 2026 ------------------


def test_a_p2_received_friday_evening_is_due_by_end_of_monday_hours(businesses):
    """Harbor (New York, Mon-Fri 8-18) writes at 19:30 on Friday Dec 4 with
    every fact: no pause, the business day is Monday's, due 18:00 Monday."""
    received = dt.datetime(2026, 12, 4, 19, 30, tzinfo=NY)
    body = (
        "Hello, minor formatting issue: the call summaries we got since "
        "2pm ET today show the date twice. Data is still correct, not urgent. "
        "Line +1 617 555 0142, example caller +1 617 555 0199. "
        "We haven't tried anything."
    )
    with time_machine.travel(received, tick=False):
        ingest_raw(
            make_email(subject="Summary date shown twice", body=body),
            received_at=received,
        )

    ticket = Ticket.objects.get()
    assert ticket.priority == "P2"
    assert ticket.missing_facts == []
    assert ticket.clock_paused_at is None
    assert ticket.next_update_due == dt.datetime(2026, 12, 7, 18, 0, tzinfo=NY)


def test_a_p2_paused_friday_evening_and_answered_saturday_keeps_monday(businesses):
    """Paused after hours on Friday with a whole business day left; the
    answer on Saturday resumes it: the weekend counts in neither state."""
    received = dt.datetime(2026, 12, 4, 19, 30, tzinfo=NY)
    with time_machine.travel(received, tick=False):
        ingest_raw(
            make_email(
                subject="Summary spacing",
                body="Minor formatting issue in the summaries, not urgent.",
            ),
            received_at=received,
        )
    ticket = Ticket.objects.get()
    assert ticket.priority == "P2"
    assert ticket.next_update_remaining == dt.timedelta(hours=10)

    ticket_status_change(
        ticket=ticket,
        status=Ticket.Status.OPEN,
        at=dt.datetime(2026, 12, 5, 9, 0, tzinfo=NY),
    )
    ticket.refresh_from_db()
    assert ticket.next_update_due == dt.datetime(2026, 12, 7, 18, 0, tzinfo=NY)


def test_p0_promises_on_the_fall_back_night_count_real_minutes(businesses):
    """Nov 1 2026, New York: 01:55 EDT + 30 min is 01:25 EST (the second
    1 AM); the first reply names that time with its zone."""
    received = _utc(2026, 11, 1, 5, 55)  # 01:55 EDT
    with time_machine.travel(received, tick=False):
        ingest_raw(
            make_email(
                subject="No call summaries tonight",
                body="Since 1:30am ET no call summaries and no texts at all, "
                "on-call never got paged. Line +1 617 555 0142.",
            ),
            received_at=received,
        )

    ticket = Ticket.objects.get()
    assert ticket.priority == "P0"
    assert ticket.acknowledge_due == _utc(2026, 11, 1, 6, 5)
    assert ticket.next_update_due == _utc(2026, 11, 1, 6, 25)
    reply = Notification.objects.get(ticket=ticket, reason="first_reply")
    assert "will update you by 1:25 AM EST." in reply.body


def test_p1_promises_across_the_spring_forward_gap(db):
    """Mar 8 2026, New York: 01:30 EST + 1 hour is 03:30 EDT; the clock
    counts the hour that was lived, not the wall-clock hour that was skipped."""
    received = dt.datetime(2026, 3, 8, 1, 30, tzinfo=NY)
    ticket = _ticket("P1", received, acknowledged_at=None)

    assert ticket.acknowledge_due == dt.datetime(2026, 3, 8, 3, 30, tzinfo=NY)
    assert ticket.acknowledge_due - received == dt.timedelta(hours=1)
    ticket_status_change(
        ticket=ticket,
        status=Ticket.Status.WAITING_ON_CUSTOMER,
        at=dt.datetime(2026, 3, 8, 1, 45, tzinfo=NY),
    )
    ticket_status_change(
        ticket=ticket,
        status=Ticket.Status.OPEN,
        at=dt.datetime(2026, 3, 8, 3, 15, tzinfo=NY),  # 30 real minutes later
    )
    ticket.refresh_from_db()
    assert ticket.clock_paused_total == dt.timedelta(minutes=30)
    assert ticket.acknowledge_due == dt.datetime(2026, 3, 8, 4, 0, tzinfo=NY)


@pytest.mark.parametrize(
    ("paused", "resumed", "due"),
    [
        # Paused Friday 17:00 EST with 1 open hour left, resumed Monday 08:00
        # EDT: due 09:00 EDT, the lost Sunday hour changes nothing.
        ((2026, 3, 6, 17, 0), (2026, 3, 9, 8, 0), (2026, 3, 9, 9, 0)),
        # Same around the fall-back Sunday, Nov 1.
        ((2026, 10, 30, 17, 0), (2026, 11, 2, 8, 0), (2026, 11, 2, 9, 0)),
    ],
)
def test_a_paused_p2_over_a_dst_weekend_keeps_its_open_hours(db, paused, resumed, due):
    ticket = _ticket(
        "P2",
        dt.datetime(2026, 3, 5, 18, 0, tzinfo=NY),
        next_update_due=dt.datetime(*paused[:3], 18, 0, tzinfo=NY),
    )
    ticket_status_change(
        ticket=ticket,
        status=Ticket.Status.WAITING_ON_CUSTOMER,
        at=dt.datetime(*paused, tzinfo=NY),
    )
    ticket.refresh_from_db()
    assert ticket.next_update_remaining == dt.timedelta(hours=1)
    ticket_status_change(
        ticket=ticket, status=Ticket.Status.OPEN, at=dt.datetime(*resumed, tzinfo=NY)
    )

    ticket.refresh_from_db()
    assert ticket.next_update_due == dt.datetime(*due, tzinfo=NY)
