"""Correlation: reports of one failing part from several businesses.

Reports of the same component (Ticket.component, set by triage) from two or
more businesses within CORRELATION_WINDOW of each other mean several
customers are affected (the field guide's P0 rule): those tickets become P0,
are paged like any P0, and link to one incident for that component, opened
if none is open. From the fourth report linked to it on, every ticket of the
incident carries `many_reports`. Each step is written on the tickets'
history with its reason.

Locking, so two workers never open two incidents for one part: the
component's lock (`component_lock`) is held until the caller's transaction
commits, and the other tickets of a cluster are locked with SKIP LOCKED. A
ticket busy in another transaction (a reply being processed, an update
being fanned out) is never waited for, which would deadlock with a reply
worker that holds its ticket and waits for the component; it is joined by
a task after commit (`tasks.ticket_cluster_join`).

Limitation: the component's lock is held until the intake transaction
commits, so reports of one part are processed one at a time across
workers (reports of other parts are not held up). At a few tens of
milliseconds per report that is hundreds a minute, far above what one
outage brings in.
"""

import datetime as dt
import logging
from collections.abc import Sequence

from django.db import transaction

from tickets.models import Escalation, Priority, Ticket, TicketEvent
from tickets.triage import MANY_REPORTS_THRESHOLD

from .models import Component, Incident
from .services import (
    OPEN_TICKET_STATUSES,
    component_lock,
    incident_open_for_component,
)

logger = logging.getLogger(__name__)

CORRELATION_WINDOW = dt.timedelta(minutes=60)
SEVERAL_BUSINESSES = 2


def ticket_correlate(*, ticket: Ticket) -> Incident | None:
    """Correlate a ticket whose component triage just set; the incident or None.

    The ticket's cluster is the open tickets on its component received
    within CORRELATION_WINDOW of it (either side, so a replayed older
    report finds its peers). With two or more businesses in it, every
    ticket of the cluster joins the component's open incident. A ticket
    already linked to an open incident gets the incident's `many_reports`
    even when its own window has gone quiet. The caller's `ticket` is
    updated in place and saved. Call inside the transaction that triaged
    it: the component's lock is held until that transaction ends.
    """
    component = ticket.component
    if (
        component not in Component.values
        or ticket.status not in OPEN_TICKET_STATUSES
        or ticket.pk is None
    ):
        return None

    with transaction.atomic():
        component_lock(component)
        members = list(
            Ticket.objects.filter(
                component=component,
                status__in=OPEN_TICKET_STATUSES,
                received_at__gte=ticket.received_at - CORRELATION_WINDOW,
                received_at__lte=ticket.received_at + CORRELATION_WINDOW,
            )
            .select_related("business", "incident")
            .order_by("received_at", "id")
        )
        # Tickets an agent linked to another open incident stay with it.
        members = [
            m
            for m in members
            if m.pk == ticket.pk
            or m.incident_id is None
            or not m.incident.is_open
            or m.incident.component == component
        ]
        businesses = {m.business_id: m.business for m in members if m.business_id}
        if len(businesses) < SEVERAL_BUSINESSES:
            incident = ticket.incident if ticket.incident_id else None
            if incident is not None and incident.is_open:
                _many_reports(incident=incident, tickets=[ticket])
                return incident
            return None

        by_business: dict[str, list[str]] = {}
        for m in members:
            name = m.business.name if m.business_id else "sender not matched"
            by_business.setdefault(name, []).append(m.reference)
        names = "; ".join(
            f"{name} ({', '.join(refs)})" for name, refs in by_business.items()
        )
        label = Component(component).label
        reason = (
            f"{label} reported by {len(businesses)} businesses within "
            f"{_minutes(CORRELATION_WINDOW)} minutes: {names}"
        )
        incident, opened = incident_open_for_component(
            component=component,
            priority=Priority.P0,
            opened_at=ticket.received_at,
            impact=f"Several customers report {label} failing.",
            businesses=businesses.values(),
            note=f"Opened automatically: {reason}.",
        )
        if not opened:
            incident.affected_businesses.add(*businesses.values())

        unlinked = [
            m.pk for m in members if m.pk != ticket.pk and m.incident_id != incident.pk
        ]
        joining = [ticket] + _lock_others(unlinked, incident=incident)
        for member in joining:
            ticket_cluster_apply(
                incident=incident,
                ticket=member,
                reason=reason,
                moment=max(member.received_at, ticket.received_at),
                opened=opened,
            )
        others = list(
            incident.tickets.filter(status__in=OPEN_TICKET_STATUSES)
            .exclude(pk__in=[m.pk for m in joining])
            .values_list("pk", flat=True)
        )
        _many_reports(
            incident=incident, tickets=joining + _lock_others(others, incident=incident)
        )
    logger.info(
        "ticket correlated id=%s component=%s incident=%s opened=%s businesses=%s",
        ticket.pk,
        component,
        incident.pk,
        opened,
        len(businesses),
    )
    return incident


def ticket_cluster_join(*, ticket_id: int, incident_id: int) -> None:
    """Join a ticket that was busy when its cluster was correlated.

    Locks the ticket first and the component second, the order a reply
    worker takes them in, so the two cannot deadlock.
    """
    with transaction.atomic():
        ticket = (
            Ticket.objects.select_for_update(of=("self",))
            .select_related("business")
            .filter(pk=ticket_id)
            .first()
        )
        incident = Incident.objects.filter(pk=incident_id).first()
        if ticket is None or incident is None or not incident.is_open:
            return
        if ticket.status not in OPEN_TICKET_STATUSES:
            return
        component_lock(incident.component or ticket.component)
        if ticket.business_id:
            incident.affected_businesses.add(ticket.business)
        ticket_cluster_apply(
            incident=incident,
            ticket=ticket,
            reason=f"reported by several businesses within "
            f"{_minutes(CORRELATION_WINDOW)} minutes; joined once the ticket "
            "was free of another step",
            moment=ticket.received_at,
            opened=False,
        )
        _many_reports(incident=incident, tickets=[ticket])


def ticket_cluster_apply(
    *,
    incident: Incident,
    ticket: Ticket,
    reason: str,
    moment: dt.datetime,
    opened: bool,
) -> None:
    """Link one locked ticket to the incident, raise it to P0, page it.

    Each step is written on the ticket's history. The rise goes through
    `tickets.services.ticket_priority_change`: P0 due times from `moment`
    (`tickets.sla.due_times`, the sooner promise kept, a paused clock
    respected) and one P0 page (idempotent per ticket). A ticket already
    linked is left alone: an agent may have lowered its priority on
    purpose. `ticket` is refreshed in place.
    """
    # Imported here: tickets.services imports this module.
    from tickets.services import ticket_priority_change

    if ticket.incident_id == incident.pk:
        return
    if ticket.incident_id is not None and ticket.incident.is_open:
        # An agent linked it to another open incident; that choice stands.
        return
    raise_it = ticket.priority != Priority.P0
    ticket.incident = incident
    if raise_it:
        ticket.priority_reasons = [
            *ticket.priority_reasons,
            f"several customers affected: {reason}",
        ]
    ticket.save(update_fields=["incident", "priority_reasons", "updated_at"])
    TicketEvent.objects.create(ticket=ticket, kind="correlated", detail=reason)
    TicketEvent.objects.create(
        ticket=ticket,
        kind="incident_linked",
        detail=f"incident #{incident.pk} {incident.title} "
        f"({'opened automatically' if opened else 'already open'})",
    )
    if not raise_it:
        return
    TicketEvent.objects.create(
        ticket=ticket,
        kind="priority_raised",
        detail=f"{ticket.priority} to P0: several customers affected "
        f"(incident #{incident.pk}): {reason}",
    )
    ticket_priority_change(
        ticket=ticket,
        priority=Priority.P0,
        reason=f"several customers affected (incident #{incident.pk})",
        at=moment,
    )
    ticket.refresh_from_db()


def _many_reports(*, incident: Incident, tickets: Sequence[Ticket]) -> None:
    """From the fourth linked report on, `many_reports` on every ticket."""
    linked = list(
        incident.tickets.order_by("received_at", "id").values_list(
            "reference", flat=True
        )
    )
    if len(linked) <= MANY_REPORTS_THRESHOLD:
        return
    detail = (
        f"{Escalation.MANY_REPORTS}: {len(linked)} reports linked to incident "
        f"#{incident.pk} ({', '.join(linked)})"
    )
    for ticket in tickets:
        if Escalation.MANY_REPORTS in ticket.escalations:
            continue
        ticket.escalations = sorted({*ticket.escalations, Escalation.MANY_REPORTS})
        ticket.save(update_fields=["escalations", "updated_at"])
        TicketEvent.objects.create(
            ticket=ticket, kind="escalation_added", detail=detail
        )


def _lock_others(ids: Sequence[int], *, incident: Incident) -> list[Ticket]:
    """Lock the tickets that are free; join the busy ones after commit."""
    if not ids:
        return []
    locked = list(
        Ticket.objects.filter(pk__in=ids, status__in=OPEN_TICKET_STATUSES)
        .select_related("business")
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("id")
    )
    busy = set(ids) - {t.pk for t in locked}
    if busy:
        from .tasks import ticket_cluster_join as join_task

        for ticket_id in sorted(busy):
            transaction.on_commit(
                lambda ticket_id=ticket_id: join_task.delay(ticket_id, incident.pk)
            )
        logger.info(
            "correlation: tickets %s busy, joining incident %s after commit",
            ",".join(map(str, sorted(busy))),
            incident.pk,
        )
    return locked


def _minutes(delta: dt.timedelta) -> int:
    return int(delta.total_seconds() // 60)
