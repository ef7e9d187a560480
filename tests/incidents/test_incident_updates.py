"""Incident updates: checked, fanned out once, resolving; the incident clock."""

import datetime as dt
import logging
import threading

import pytest
from django.conf import settings
from django.db import connection, transaction

from incidents import services
from incidents.models import Incident, IncidentClockAlert, IncidentUpdate
from incidents.services import (
    GuardrailBlocked,
    IncidentAlreadyResolved,
    IncidentUpdateRefused,
    NextUpdateRequired,
    incident_clock_check,
    incident_post_update,
    incident_update_fan_out,
    update_script,
)
from notifications.models import Notification
from tests.factories import TicketFactory, TicketMessageFactory, UserFactory
from tickets.models import Ticket, TicketMessage

pytestmark = pytest.mark.django_db

# Monday 8 December 2026, 22:30 in New York, 21:30 in Chicago.
NOW = dt.datetime(2026, 12, 8, 3, 30, tzinfo=dt.UTC)
IN_30 = NOW + dt.timedelta(minutes=30)


@pytest.fixture
def incident(businesses):
    """SMS incident for Harbor and Cedar, one open ticket each linked to it.

    Also: a resolved linked ticket and an open Harbor ticket about something
    else, neither of which is told.
    """
    harbor = businesses["Harbor Plumbing & Heating"]
    cedar = businesses["Cedar Ridge Veterinary Clinic"]
    incident = services.incident_open(
        title="SMS notifications: reports from several customers",
        priority="P0",
        component="sms",
        opened_at=NOW - dt.timedelta(minutes=20),
        businesses=[harbor, cedar],
    )
    TicketFactory(
        business=harbor,
        requester_email="dispatch@harborplumbing.example",
        requester_name="Dana Whitfield",
        subject="SMS alerts not arriving",
        incident=incident,
        status=Ticket.Status.OPEN,
        priority="P0",
    )
    TicketFactory(
        business=cedar,
        requester_email="frontdesk@cedarridgevet.example",
        subject="Text messages missing tonight",
        incident=incident,
        status=Ticket.Status.WAITING_ON_CUSTOMER,
        priority="P0",
    )
    TicketFactory(
        business=cedar,
        requester_email="oncall@cedarridgevet.example",
        incident=incident,
        status=Ticket.Status.RESOLVED,
    )
    TicketFactory(
        business=harbor,
        requester_email="dispatch@harborplumbing.example",
        subject="Summary formatting",
        status=Ticket.Status.OPEN,
    )
    return incident


def post(incident, **overrides):
    values = {
        "incident": incident,
        "author": None,
        "status": "identified",
        "body": update_script(status="identified"),
        "next_update_at": IN_30,
        "now": NOW,
    }
    values.update(overrides)
    return incident_post_update(**values)


def updates_owed():
    return Notification.objects.filter(reason=Notification.Reason.INCIDENT_UPDATE)


# --- Fan-out -----------------------------------------------------------------


def test_an_update_reaches_each_open_linked_ticket_once_and_the_contacts(incident):
    harbor_ticket, cedar_ticket = incident.tickets.exclude(
        status=Ticket.Status.RESOLVED
    ).order_by("id")

    update = post(incident)

    for ticket in (harbor_ticket, cedar_ticket):
        owed = updates_owed().get(ticket=ticket)
        assert owed.channel == "email"
        assert owed.recipient == ticket.requester_email
        assert owed.incident_id == incident.pk
        assert f"[{ticket.reference}]" in owed.subject
        message = ticket.messages.get(direction=TicketMessage.Direction.OUTBOUND)
        assert message.body == owed.body
        assert message.message_id == owed.headers["Message-ID"]
        ticket.refresh_from_db()
        assert ticket.next_update_due == IN_30
        assert ticket.events.filter(kind="incident_update").count() == 1
    # Neither the resolved linked ticket nor Harbor's unrelated one is told.
    assert updates_owed().exclude(ticket=None).count() == 2
    # Contacts not already told on a ticket: Harbor's on-call, Cedar's on-call.
    assert sorted(
        updates_owed().filter(ticket=None).values_list("recipient", flat=True)
    ) == [
        "dana@harborplumbing.example",
        "oncall@cedarridgevet.example",
    ]

    with transaction.atomic():
        assert incident_update_fan_out(update=update) == 0
    assert updates_owed().count() == 4
    assert TicketMessage.objects.filter(direction="out").count() == 2


def test_the_next_update_time_is_written_in_each_business_zone(incident):
    post(incident)

    harbor = updates_owed().get(recipient="dispatch@harborplumbing.example")
    cedar = updates_owed().get(recipient="frontdesk@cedarridgevet.example")
    assert "Next update by 11:00 PM EST." in harbor.body
    assert "Next update by 10:00 PM CST." in cedar.body
    assert harbor.body.startswith("Hello Dana Whitfield,")
    assert "{next_update}" not in harbor.body
    assert "If needed, your on-call can place a manual callback." in harbor.body


def test_an_update_without_the_time_placeholder_gets_the_next_update_line(incident):
    post(incident, body="We've identified the cause and are working on a fix.")

    owed = updates_owed().get(recipient="dispatch@harborplumbing.example")
    assert "working on a fix.\n\nNext update by 11:00 PM EST." in owed.body


def test_placeholders_fill_per_ticket_and_a_broken_one_is_refused(incident):
    post(incident, body="Your ticket {reference}: next update by {next_update}.")

    ticket = incident.tickets.get(requester_email="dispatch@harborplumbing.example")
    owed = updates_owed().get(ticket=ticket)
    assert f"Your ticket {ticket.reference}: next update by 11:00 PM EST." in (
        owed.body
    )
    with pytest.raises(IncidentUpdateRefused, match="unknown placeholder"):
        post(incident, body="Next update by {time}.")


@pytest.mark.parametrize("status", [s for s, _ in Incident.Status.choices])
def test_every_status_starts_from_words_that_pass_the_never_say_check(status):
    from tickets.guardrail import check_outgoing

    text = services.update_text(
        body=update_script(status=status),
        next_update_at=IN_30,
        zone=dt.UTC,
        reference=NOW,
    )

    assert check_outgoing(text) == []
    if status != "resolved":
        assert "by 4:00 AM UTC" in text


def test_an_update_threads_on_the_ticket_conversation(incident):
    ticket = incident.tickets.get(requester_email="dispatch@harborplumbing.example")
    TicketMessageFactory(
        ticket=ticket,
        message_id="<first@harborplumbing.example>",
        created_at=NOW - dt.timedelta(minutes=25),
    )

    post(incident)

    owed = updates_owed().get(ticket=ticket)
    assert owed.headers["In-Reply-To"] == "<first@harborplumbing.example>"
    assert owed.headers["References"] == "<first@harborplumbing.example>"


def test_the_update_moves_the_incident_status_and_promise(incident):
    update = post(incident)

    incident.refresh_from_db()
    assert incident.status == "identified"
    assert incident.next_update_due == IN_30
    assert update.customer_facing and update.next_update_at == IN_30


# --- Never-say check and the next-update rule --------------------------------


def test_words_we_cannot_stand_behind_hold_the_update(incident):
    with pytest.raises(GuardrailBlocked) as blocked:
        post(incident, body="It's definitely fixed. This can't happen again.")

    words = [finding.words for finding in blocked.value.findings]
    assert "It's definitely fixed" in words
    assert "This can't happen" in words
    assert all(finding.why for finding in blocked.value.findings)
    assert not IncidentUpdate.objects.exists()
    assert not updates_owed().exists()
    incident.refresh_from_db()
    assert incident.status == "investigating"


def test_send_anyway_needs_a_reason_which_is_kept_and_logged(incident, caplog):
    with pytest.raises(GuardrailBlocked):
        post(incident, body="It's definitely fixed.", override_reason="   ")

    with caplog.at_level(logging.WARNING, logger="incidents.services"):
        update = post(
            incident,
            body="It's definitely fixed.",
            override_reason="engineering verified the carrier fix",
        )

    assert update.override_reason == "engineering verified the carrier fix"
    assert update.guardrail_findings[0]["words"] == "It's definitely fixed"
    assert updates_owed().count() == 4
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "engineering verified the carrier fix" in line
        and "It's definitely fixed" in line
        for line in logged
    )


def test_a_customer_facing_update_needs_a_next_update_time_in_the_future(incident):
    with pytest.raises(NextUpdateRequired):
        post(incident, next_update_at=None)
    with pytest.raises(NextUpdateRequired):
        post(incident, next_update_at=NOW - dt.timedelta(minutes=1))

    assert not IncidentUpdate.objects.exists()
    assert not updates_owed().exists()


def test_an_internal_note_needs_no_next_update_and_tells_nobody(incident):
    due = incident.next_update_due

    post(
        incident,
        status="identified",
        body="Carrier confirms filtering on our sender number.",
        next_update_at=None,
        customer_facing=False,
    )

    incident.refresh_from_db()
    assert incident.status == "identified"
    assert incident.next_update_due == due
    assert not updates_owed().exists()


# --- Resolution --------------------------------------------------------------


def test_resolving_tells_the_tickets_with_the_resolved_script_then_resolves_them(
    incident,
):
    open_tickets = list(
        incident.tickets.exclude(status=Ticket.Status.RESOLVED).order_by("id")
    )

    update = post(incident, status="resolved", body="", next_update_at=None)

    assert update.body == update_script(status="resolved")
    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert incident.resolved_at == NOW
    assert incident.next_update_due is None
    for ticket in open_tickets:
        ticket.refresh_from_db()
        assert ticket.status == Ticket.Status.RESOLVED
        told = updates_owed().get(ticket=ticket)
        assert "This incident is resolved." in told.body
        assert "Next update" not in told.body
        assert ticket.events.filter(kind="resolved").exists()
    unrelated = Ticket.objects.get(subject="Summary formatting")
    assert unrelated.status == Ticket.Status.OPEN

    with pytest.raises(IncidentAlreadyResolved):
        post(incident)


# --- The incident clock ------------------------------------------------------


def test_the_owner_is_reminded_once_before_the_update_is_due(incident):
    incident.owner = UserFactory(email="lead@afterhours.example")
    incident.next_update_due = IN_30
    incident.save()

    assert incident_clock_check(now=IN_30 - dt.timedelta(minutes=15)) == []
    raised = incident_clock_check(now=IN_30 - dt.timedelta(minutes=8))
    assert incident_clock_check(now=IN_30 - dt.timedelta(minutes=7)) == []

    assert [alert.kind for alert in raised] == ["reminder"]
    reminder = Notification.objects.get(reason=Notification.Reason.SLA_ALERT)
    assert reminder.channel == "email"
    assert reminder.recipient == "lead@afterhours.example"
    assert "due by 04:00 UTC (8 min)" in reminder.body


def test_a_late_update_pages_support_on_call_once(incident):
    incident.next_update_due = IN_30
    incident.save()

    incident_clock_check(now=IN_30 - dt.timedelta(minutes=5))
    late = incident_clock_check(now=IN_30 + dt.timedelta(minutes=1))
    assert incident_clock_check(now=IN_30 + dt.timedelta(minutes=2)) == []
    assert incident_clock_check(now=IN_30 + dt.timedelta(minutes=40)) == []

    assert [alert.kind for alert in late] == ["escalation"]
    alerts = Notification.objects.filter(reason=Notification.Reason.SLA_ALERT)
    # No owner: the reminder went to support on-call as well, by SMS.
    assert [(n.channel, n.recipient) for n in alerts.order_by("id")] == [
        ("sms", settings.SUPPORT_ONCALL_PHONE),
        ("sms", settings.SUPPORT_ONCALL_PHONE),
    ]
    assert "is late" in alerts.order_by("id").last().body


def test_a_new_promise_gets_its_own_reminder(incident):
    incident.next_update_due = IN_30
    incident.save()
    incident_clock_check(now=IN_30 - dt.timedelta(minutes=5))

    post(incident, next_update_at=IN_30 + dt.timedelta(minutes=30), now=IN_30)
    raised = incident_clock_check(now=IN_30 + dt.timedelta(minutes=25))

    assert [(a.kind, a.due_at) for a in raised] == [
        ("reminder", IN_30 + dt.timedelta(minutes=30))
    ]


def test_a_reminder_missed_while_beat_was_down_is_not_sent_late(incident):
    incident.next_update_due = IN_30
    incident.save()

    raised = incident_clock_check(now=IN_30 + dt.timedelta(minutes=3))

    assert [alert.kind for alert in raised] == ["escalation"]
    assert not IncidentClockAlert.objects.filter(kind="reminder").exists()


def test_a_resolved_incident_has_no_clock(incident):
    post(incident, status="resolved", body="", next_update_at=None)

    assert incident_clock_check(now=NOW + dt.timedelta(hours=5)) == []


def test_the_clock_runs_every_minute_on_beat():
    from incidents.tasks import incident_clock_sweep

    entry = settings.CELERY_BEAT_SCHEDULE["incident-clock"]
    assert entry["task"] == incident_clock_sweep.name
    assert entry["schedule"] == 60.0


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_the_same_moment_send_each_alert_once(businesses):
    incidents = [
        services.incident_open(
            title=f"Incident {n}", priority="P0", opened_at=NOW - dt.timedelta(hours=1)
        )
        for n in range(5)
    ]
    Incident.objects.filter(pk__in=[i.pk for i in incidents]).update(
        next_update_due=NOW
    )
    barrier = threading.Barrier(2)
    raised: list[int] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait(timeout=10)
            raised.append(len(incident_clock_check(now=NOW + dt.timedelta(minutes=1))))
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(raised) == 5
    assert IncidentClockAlert.objects.count() == 5
    assert Notification.objects.filter(reason="sla_alert").count() == 5
