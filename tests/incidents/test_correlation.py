"""Correlation: one failing part reported by several businesses is one P0 incident."""

import datetime as dt
import threading

import pytest
from django.db import connection, transaction

from incidents import correlation
from incidents import services as incident_services
from incidents.models import Incident
from notifications.models import Notification
from tests.incidents.reports import NIGHT, ingest_report, store_report
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

FOUR_IN_40_MINUTES = [("harbor", 0), ("cedar", 12), ("summit", 25), ("bayview", 40)]


def minutes(n: int) -> dt.datetime:
    return NIGHT + dt.timedelta(minutes=n)


def kinds(ticket: Ticket) -> list[str]:
    return list(ticket.events.values_list("kind", flat=True))


def test_four_businesses_reporting_sms_failures_within_40_minutes_is_one_p0_incident(
    businesses,
):
    """All four P0, one incident, many_reports on all four, history written."""
    for key, at in FOUR_IN_40_MINUTES:
        ingest_report(key, minutes(at))

    tickets = list(Ticket.objects.order_by("received_at"))
    assert [t.business.name for t in tickets] == [
        "Harbor Plumbing & Heating",
        "Cedar Ridge Veterinary Clinic",
        "Summit Property Management",
        "Bayview Dental Group",
    ]
    incident = Incident.objects.get()
    assert incident.component == "sms"
    assert incident.components == ["sms"]
    assert incident.priority == "P0"
    assert incident.status == Incident.Status.INVESTIGATING
    # Opened by the second business's report, its first update due 30 min on.
    assert incident.opened_at == minutes(12)
    assert incident.next_update_due == minutes(42)
    assert {b.name for b in incident.affected_businesses.all()} == {
        t.business.name for t in tickets
    }
    for ticket in tickets:
        assert ticket.priority == "P0", ticket.reference
        assert ticket.incident_id == incident.pk
        assert "many_reports" in ticket.escalations, ticket.reference
        assert {"correlated", "incident_linked", "priority_raised"} <= set(
            kinds(ticket)
        )
    # The first three were linked before the fourth report; the escalation
    # is written on their history with every report it counts.
    for ticket in tickets[:3]:
        added = ticket.events.get(kind="escalation_added")
        assert all(t.reference in added.detail for t in tickets)
    first_reason = tickets[0].events.get(kind="correlated").detail
    assert "2 businesses within 60 minutes" in first_reason
    assert f"Harbor Plumbing & Heating ({tickets[0].reference})" in first_reason
    assert f"Cedar Ridge Veterinary Clinic ({tickets[1].reference})" in first_reason
    assert incident.updates.get(customer_facing=False).body.startswith(
        "Opened automatically"
    )


def test_a_ticket_raised_by_correlation_gets_p0_due_times_and_one_page(businesses):
    """Harbor's P1 (4 h update) owes a P0 update 30 min after Cedar's report."""
    ingest_report("harbor", minutes(0))
    harbor = Ticket.objects.get()
    assert harbor.priority == "P1"
    assert harbor.next_update_due == minutes(4 * 60)
    assert not Notification.objects.filter(reason="p0_page").exists()

    ingest_report("cedar", minutes(12))
    ingest_report("summit", minutes(25))

    harbor.refresh_from_db()
    assert harbor.priority == "P0"
    assert harbor.next_update_due == minutes(12 + 30)
    assert any("several customers affected" in r for r in harbor.priority_reasons)
    for ticket in Ticket.objects.all():
        pages = Notification.objects.filter(reason="p0_page", ticket=ticket)
        recipients = list(pages.values_list("recipient", flat=True))
        # The business's first on-call and our own on-call, once each.
        assert len(recipients) == 2 == len(set(recipients)), ticket.reference
        assert "+16175550100" in recipients


def test_the_report_that_triggers_correlation_gets_the_p0_first_reply(businesses):
    ingest_report("harbor", minutes(0))
    ingest_report("cedar", minutes(12))

    cedar = Ticket.objects.get(business__name__startswith="Cedar")
    first_reply = Notification.objects.get(ticket=cedar, reason="first_reply")
    # The P0 promise: 30 minutes after 03:42 UTC, in Chicago (not P1's 4 h).
    assert "will update you by 10:12 PM CST" in first_reply.body


def test_two_reports_from_one_business_do_not_correlate(businesses):
    ingest_report("harbor", minutes(0))
    ingest_report("harbor_oncall", minutes(10))

    assert Ticket.objects.count() == 2
    assert not Incident.objects.exists()
    for ticket in Ticket.objects.all():
        assert ticket.priority == "P1"
        assert ticket.incident_id is None
        assert "correlated" not in kinds(ticket)


@pytest.mark.parametrize("order", ["in order", "older replayed last"])
def test_reports_61_minutes_apart_do_not_correlate(businesses, order):
    reports = [("harbor", minutes(0)), ("cedar", minutes(61))]
    if order != "in order":
        reports.reverse()
    for key, at in reports:
        ingest_report(key, at)

    assert not Incident.objects.exists()
    assert set(Ticket.objects.values_list("priority", flat=True)) == {"P1"}


def test_reports_exactly_60_minutes_apart_correlate(businesses):
    ingest_report("harbor", minutes(0))
    ingest_report("cedar", minutes(60))

    assert Incident.objects.count() == 1
    assert set(Ticket.objects.values_list("priority", flat=True)) == {"P0"}


def test_after_the_incident_is_resolved_new_reports_open_a_new_one(businesses):
    ingest_report("harbor", minutes(0))
    ingest_report("cedar", minutes(5))
    first = Incident.objects.get()
    incident_services.incident_post_update(
        incident=first,
        author=None,
        status="resolved",
        body="",
        next_update_at=None,
        now=minutes(20),
    )

    ingest_report("summit", minutes(30))
    ingest_report("bayview", minutes(35))

    second = Incident.objects.exclude(pk=first.pk).get()
    assert second.component == "sms" and second.is_open
    assert set(second.tickets.values_list("business__name", flat=True)) == {
        "Summit Property Management",
        "Bayview Dental Group",
    }
    # The resolved tickets stay with the incident that resolved them.
    assert first.tickets.count() == 2


def test_a_reply_that_names_the_failing_part_correlates_its_ticket(businesses):
    """Cedar's first message names nothing; its reply says SMS is failing."""
    from intake.services import inbound_email_process, inbound_email_store

    ingest_report("harbor", minutes(0))
    first = (
        b"From: Front Desk <frontdesk@cedarridgevet.example>\r\n"
        b"To: support@afterhours.example\r\nSubject: Question about our account\r\n"
        b"Date: Tue, 08 Dec 2026 03:35:00 +0000\r\n"
        b"Message-ID: <cedar-question@mail.example>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Hi, could someone call us back about our account setup? Thanks.\r\n"
    )
    stored, _ = inbound_email_store(raw=first, esp="test", received_at=minutes(5))
    inbound_email_process(inbound_email_id=stored.pk)
    cedar = Ticket.objects.get(business__name__startswith="Cedar")
    assert cedar.component == "" and not Incident.objects.exists()

    reply = (
        "From: Front Desk <frontdesk@cedarridgevet.example>\r\n"
        "To: support@afterhours.example\r\n"
        f"Subject: Re: Question about our account [{cedar.reference}]\r\n"
        "Date: Tue, 08 Dec 2026 03:45:00 +0000\r\n"
        "Message-ID: <cedar-reply@mail.example>\r\n"
        "In-Reply-To: <cedar-question@mail.example>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Also, since 9:15pm CT our on-call is not receiving the SMS for calls "
        "to 312-555-0118. Email summaries still arrive.\r\n"
    ).encode()
    stored, _ = inbound_email_store(raw=reply, esp="test", received_at=minutes(15))
    inbound_email_process(inbound_email_id=stored.pk)

    cedar.refresh_from_db()
    incident = Incident.objects.get()
    assert cedar.component == "sms"
    assert cedar.incident_id == incident.pk and cedar.priority == "P0"
    assert Ticket.objects.get(business__name__startswith="Harbor").priority == "P0"
    assert Notification.objects.filter(reason="p0_page", ticket=cedar).count() == 2


def test_a_ticket_without_a_known_component_does_not_correlate(businesses):
    ingest_report("harbor", minutes(0))
    ticket = Ticket.objects.get()
    ticket.component = ""

    assert correlation.ticket_correlate(ticket=ticket) is None


# --- Concurrency -------------------------------------------------------------


def _process_together(inbound_ids: list[int]) -> list[BaseException]:
    """Process stored reports in parallel threads released at one instant."""
    from intake.services import inbound_email_process

    barrier = threading.Barrier(len(inbound_ids))
    errors: list[BaseException] = []

    def work(inbound_id: int) -> None:
        try:
            barrier.wait(timeout=10)
            inbound_email_process(inbound_email_id=inbound_id)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in inbound_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lock", ["component lock", "constraint only"])
def test_two_workers_correlating_at_once_open_one_incident(
    businesses, monkeypatch, lock
):
    """Harbor reported; Cedar and Summit processed at the same instant.

    Each worker alone sees two businesses and would open an incident. With
    the component lock the second waits and joins the first's; without it
    the one-open-incident constraint still leaves one.
    """
    if lock == "constraint only":
        monkeypatch.setattr(incident_services, "component_lock", lambda component: None)
        monkeypatch.setattr(correlation, "component_lock", lambda component: None)
    ingest_report("harbor", minutes(0))
    ids = [
        store_report("cedar", minutes(10)).pk,
        store_report("summit", minutes(11)).pk,
    ]

    errors = _process_together(ids)

    assert errors == []
    incident = Incident.objects.get()
    assert incident.tickets.count() == 3
    assert set(Ticket.objects.values_list("priority", flat=True)) == {"P0"}
    assert incident.affected_businesses.count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_ticket_busy_in_another_transaction_joins_after_it_ends(
    businesses, monkeypatch
):
    """Correlation never waits for a locked ticket; a task joins it later."""
    from incidents import tasks

    queued = []
    monkeypatch.setattr(
        tasks.ticket_cluster_join, "delay", lambda *args: queued.append(args)
    )
    ingest_report("harbor", minutes(0))
    harbor = Ticket.objects.get()
    locked, release = threading.Event(), threading.Event()

    def hold_harbor() -> None:
        try:
            with transaction.atomic():
                Ticket.objects.select_for_update().get(pk=harbor.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_harbor)
    holder.start()
    assert locked.wait(timeout=10)
    try:
        ingest_report("cedar", minutes(10))
    finally:
        release.set()
        holder.join(timeout=30)

    incident = Incident.objects.get()
    harbor.refresh_from_db()
    assert harbor.incident_id is None and harbor.priority == "P1"
    assert queued == [(harbor.pk, incident.pk)]

    tasks.ticket_cluster_join.run(*queued[0])

    harbor.refresh_from_db()
    assert harbor.incident_id == incident.pk
    assert harbor.priority == "P0"
    assert "correlated" in kinds(harbor)
    assert Notification.objects.filter(reason="p0_page", ticket=harbor).count() == 2
