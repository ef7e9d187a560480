"""The SLA watch: each reminder and each breach once, whatever runs it.

The sweep takes `now`, so every run here is on a frozen clock; the
concurrent test runs two real sweeps in two threads on two connections.
"""

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import connection

from notifications.models import Notification
from tests.factories import (
    BusinessFactory,
    IncidentFactory,
    TicketFactory,
    UserFactory,
)
from tickets.models import Ticket, TicketAlert
from tickets.services import ticket_status_change
from tickets.sla import due_times
from tickets.sla_watch import sla_sweep

NY = ZoneInfo("America/New_York")
UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)


def _utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


def _ticket(priority, received_at, **fields):
    """Acknowledged, open, its next update due per its priority."""
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


def _alerts(ticket=None):
    rows = TicketAlert.objects.all() if ticket is None else ticket.alerts.all()
    return sorted(rows.values_list("kind", "clock"))


def _sla_messages(**filters):
    return Notification.objects.filter(reason=Notification.Reason.SLA_ALERT, **filters)


def _sweep_every_minute(start, end):
    moment = start
    while moment <= end:
        sla_sweep(now=moment)
        moment += MINUTE


def test_a_reminder_goes_out_once_before_the_due_time(db):
    """P1, next update due 14:00: nothing at 13:44, one reminder from 13:45
    on (15 min lead), to support on-call by SMS when nobody owns it."""
    ticket = _ticket("P1", _utc(2026, 12, 8, 10, 0))
    due = _utc(2026, 12, 8, 14, 0)

    assert sla_sweep(now=due - dt.timedelta(minutes=16)).total == 0
    assert sla_sweep(now=due - dt.timedelta(minutes=15)).reminders == 1
    assert sla_sweep(now=due - dt.timedelta(minutes=14)).total == 0
    assert sla_sweep(now=due - dt.timedelta(minutes=1)).total == 0

    assert _alerts(ticket) == [("reminder", "next_update")]
    sms = _sla_messages().get()
    assert (sms.channel, sms.recipient) == ("sms", settings.SUPPORT_ONCALL_PHONE)
    assert ticket.reference in sms.body and "next update due by" in sms.body
    assert ticket.events.filter(kind="sla_reminder").count() == 1


def test_the_owner_is_reminded_by_email_instead_of_on_call(db):
    owner = UserFactory(email="agent@afterhours.example")
    ticket = _ticket("P0", _utc(2026, 12, 8, 3, 0), owner=owner)

    sla_sweep(now=_utc(2026, 12, 8, 3, 25))  # 5 min before 03:30

    email = _sla_messages().get()
    assert (email.channel, email.recipient) == ("email", "agent@afterhours.example")
    assert email.subject == (
        f"[{ticket.reference}] next update due by 10:30 PM EST on Monday, Dec 7"
    )


@pytest.mark.parametrize("priority", ["P0", "P1"])
def test_a_p0_or_p1_breach_pages_support_on_call_once(db, priority):
    ticket = _ticket(priority, _utc(2026, 12, 8, 3, 0))
    due = ticket.next_update_due

    assert sla_sweep(now=due).breaches == 1
    assert sla_sweep(now=due + MINUTE).total == 0
    assert sla_sweep(now=due + dt.timedelta(hours=3)).total == 0

    ticket.refresh_from_db()
    assert ticket.sla_breached_at == due
    assert "sla_breached" in ticket.escalations
    page = _sla_messages(body__contains="SLA BREACH").get()
    assert (page.channel, page.recipient) == ("sms", settings.SUPPORT_ONCALL_PHONE)
    assert ticket.events.filter(kind="sla_breach").count() == 1


def test_a_p2_breach_is_tagged_and_listed_not_paged(db, admin_client):
    ticket = _ticket("P2", dt.datetime(2026, 12, 8, 14, 0, tzinfo=NY))
    other = _ticket("P2", dt.datetime(2026, 12, 8, 14, 0, tzinfo=NY))
    other.next_update_due = dt.datetime(2026, 12, 10, 14, 0, tzinfo=NY)
    other.save()

    result = sla_sweep(now=dt.datetime(2026, 12, 9, 14, 0, tzinfo=NY))

    assert result.breaches == 1
    ticket.refresh_from_db()
    assert "sla_breached" in ticket.escalations
    assert ticket.sla_breached_at is not None
    assert not _sla_messages(channel="sms", body__contains="BREACH").exists()
    listed = admin_client.get("/admin/tickets/ticket/", {"sla": "breached"})
    assert listed.status_code == 200
    assert [t.pk for t in listed.context["cl"].result_list] == [ticket.pk]


def test_a_late_update_on_a_ticket_of_an_open_incident_is_left_to_its_clock(db):
    """The incident's own clock pages once per incident; its four linked
    tickets must not page on-call four more times. Still tagged and listed."""
    incident = IncidentFactory(priority="P0")
    ticket = _ticket("P0", _utc(2026, 12, 8, 3, 0), incident=incident)

    assert sla_sweep(now=ticket.next_update_due).breaches == 1

    ticket.refresh_from_db()
    assert "sla_breached" in ticket.escalations
    assert not _sla_messages(recipient=settings.SUPPORT_ONCALL_PHONE).exists()


def test_once_the_incident_is_resolved_its_tickets_page_again(db):
    incident = IncidentFactory(priority="P0", status="resolved")
    ticket = _ticket("P0", _utc(2026, 12, 8, 3, 0), incident=incident)

    sla_sweep(now=ticket.next_update_due)

    assert _sla_messages(recipient=settings.SUPPORT_ONCALL_PHONE).count() == 1


def test_an_unacknowledged_ticket_is_chased_on_its_acknowledgement(db):
    """First reply withheld (no address): the acknowledgement clock runs;
    a P2's next update due at the same moment is not alerted twice."""
    ticket = _ticket(
        "P2", dt.datetime(2026, 12, 8, 14, 0, tzinfo=NY), acknowledged_at=None
    )
    sla_sweep(now=dt.datetime(2026, 12, 9, 12, 0, tzinfo=NY))  # 2 h before
    sla_sweep(now=dt.datetime(2026, 12, 9, 14, 0, tzinfo=NY))

    assert _alerts(ticket) == [("breach", "acknowledge"), ("reminder", "acknowledge")]


def test_a_sweep_that_ran_every_minute_sends_each_alert_once(db):
    ticket = _ticket("P1", _utc(2026, 12, 8, 10, 0))

    _sweep_every_minute(_utc(2026, 12, 8, 13, 40), _utc(2026, 12, 8, 14, 10))

    assert _alerts(ticket) == [("breach", "next_update"), ("reminder", "next_update")]
    assert _sla_messages().count() == 2


def test_a_restarted_sweep_neither_skips_nor_doubles(db):
    """Beat down from 13:40 to 14:05 (past the 14:00 due time): the first
    run after restart writes the breach it missed, once; re-runs of a
    minute already swept (a restarted worker redelivering) add nothing."""
    ticket = _ticket("P1", _utc(2026, 12, 8, 10, 0))
    sla_sweep(now=_utc(2026, 12, 8, 13, 40))

    sla_sweep(now=_utc(2026, 12, 8, 14, 5))
    sla_sweep(now=_utc(2026, 12, 8, 14, 5))
    sla_sweep(now=_utc(2026, 12, 8, 14, 6))

    assert _alerts(ticket) == [("breach", "next_update")]
    assert _sla_messages().count() == 1


def test_a_new_due_time_is_a_new_promise_with_its_own_alerts(db):
    ticket = _ticket("P0", _utc(2026, 12, 8, 3, 0))
    sla_sweep(now=_utc(2026, 12, 8, 3, 26))
    ticket.next_update_due = _utc(2026, 12, 8, 4, 0)
    ticket.save()

    sla_sweep(now=_utc(2026, 12, 8, 3, 56))
    sla_sweep(now=_utc(2026, 12, 8, 3, 57))

    assert ticket.alerts.filter(kind="reminder").count() == 2


def test_paused_resolved_and_closed_tickets_are_left_alone(db):
    paused = _ticket("P1", _utc(2026, 12, 8, 10, 0))
    ticket_status_change(
        ticket=paused,
        status=Ticket.Status.WAITING_ON_CUSTOMER,
        at=_utc(2026, 12, 8, 11),
    )
    _ticket("P1", _utc(2026, 12, 8, 10, 0), status=Ticket.Status.RESOLVED)
    _ticket("P0", _utc(2026, 12, 8, 10, 0), status=Ticket.Status.CLOSED)

    assert sla_sweep(now=_utc(2026, 12, 9)).total == 0
    assert not TicketAlert.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_send_each_alert_once():
    """Two beats by mistake: two threads, two connections, same instant."""
    tickets = [_ticket("P0", _utc(2026, 12, 8, 3, 0)) for _ in range(6)]
    now = _utc(2026, 12, 8, 3, 31)  # every ticket breached
    start = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            start.wait(timeout=10)
            results.append(sla_sweep(now=now))
        except Exception as error:  # reported below, not swallowed
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(r.breaches for r in results) == len(tickets)
    assert TicketAlert.objects.filter(kind="breach").count() == len(tickets)
    assert _sla_messages().count() == len(tickets)
    assert Ticket.objects.filter(sla_breached_at__isnull=False).count() == len(tickets)


def _sweeps_on_local_wall_minutes(day, wall_hours, zone):
    """What a local-time cron would do: every wall minute, both passes of a
    repeated hour, none of a skipped one (converted to real instants)."""
    # Naive on purpose: a wall time, given its zone (and fold) below.
    start_h, start_m, end_h, end_m = wall_hours
    moment = dt.datetime(*day, start_h, start_m)  # noqa: DTZ001
    end = dt.datetime(*day, end_h, end_m)  # noqa: DTZ001
    instants = []
    while moment <= end:
        for fold in (0, 1):
            local = moment.replace(tzinfo=zone, fold=fold)
            real = local.astimezone(UTC)
            if real.astimezone(zone).replace(tzinfo=None) != moment:
                continue  # a wall time that did not happen
            if real not in instants:
                instants.append(real)
        moment += MINUTE
    return instants


@pytest.mark.parametrize(
    ("day", "received", "wall_hours"),
    [
        # Spring forward, Mar 8 2026: 02:00-02:59 EST never happen.
        ((2026, 3, 8), _utc(2026, 3, 8, 6, 45), (1, 0, 3, 20)),  # 01:45 EST
        # Fall back, Nov 1 2026: 01:00-01:59 happen twice.
        ((2026, 11, 1), _utc(2026, 11, 1, 5, 40), (0, 50, 2, 0)),  # 01:40 EDT
    ],
)
@pytest.mark.parametrize("schedule", ["utc_interval", "local_wall_clock"])
def test_dst_days_neither_skip_nor_double_an_alert(
    db, day, received, wall_hours, schedule
):
    """A P0 whose promises fall in the hour that is skipped or repeated:
    swept on UTC minutes (beat's interval) or on local wall minutes (a
    cron in New York, running the repeated hour twice and going back in
    time), each of its four alerts happens once, at its real instant."""
    ticket = _ticket("P0", received, acknowledged_at=None)
    if schedule == "utc_interval":
        instants = []
        moment = received
        while moment <= received + dt.timedelta(minutes=40):
            instants.append(moment)
            moment += MINUTE
    else:
        instants = _sweeps_on_local_wall_minutes(day, wall_hours, NY)
    # The local cron passes the repeated hour twice in order of wall time,
    # so its instants go back: the order it would really run them in.
    for moment in instants:
        sla_sweep(now=moment)

    alerts = {(a.kind, a.clock): a for a in ticket.alerts.all()}
    assert sorted(alerts) == [
        ("breach", "acknowledge"),
        ("breach", "next_update"),
        ("reminder", "acknowledge"),
        ("reminder", "next_update"),
    ]
    assert alerts["breach", "acknowledge"].due_at == received + dt.timedelta(minutes=10)
    assert alerts["breach", "next_update"].due_at == received + dt.timedelta(minutes=30)
    assert _sla_messages().count() == 4


def test_the_beat_entry_becomes_an_editable_periodic_task(db, monkeypatch):
    """django-celery-beat's scheduler stores the schedule as rows."""
    from django_celery_beat import schedulers
    from django_celery_beat.models import PeriodicTask

    from afterhours.celery import app

    # It drops idle connections as it goes, which would end this test's
    # transaction; a running beat has no such transaction.
    monkeypatch.setattr(schedulers, "close_old_connections", lambda: None)
    entry = settings.CELERY_BEAT_SCHEDULE["ticket-sla-sweep"]
    assert entry["task"] == "tickets.tasks.sla_sweep"
    schedulers.DatabaseScheduler(app=app, lazy=True).setup_schedule()

    task = PeriodicTask.objects.get(name="ticket-sla-sweep")
    assert task.task == "tickets.tasks.sla_sweep"
    assert (task.interval.every, task.interval.period) == (60, "seconds")
    assert task.enabled


def test_the_task_runs_the_sweep(db):
    from tickets.tasks import sla_sweep as task

    _ticket("P0", dt.datetime.now(UTC) - dt.timedelta(hours=1))
    assert task.apply().get() == 1
    assert task.apply().get() == 0


def test_a_ticket_with_every_alert_written_is_not_swept_again(db):
    """Breached and still unacknowledged: later sweeps do not even lock it."""
    from tickets.sla_watch import _owing_ids

    ticket = _ticket(
        "P2", dt.datetime(2026, 12, 8, 14, 0, tzinfo=NY), acknowledged_at=None
    )
    later = dt.datetime(2026, 12, 10, 14, 0, tzinfo=NY)
    assert _owing_ids(later) == [ticket.pk]
    sla_sweep(now=later)

    assert _owing_ids(later + dt.timedelta(days=3)) == []
