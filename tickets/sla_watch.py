"""The SLA watch: remind before a due time, escalate when one passes.

Beat runs `sla_sweep` every minute (`tickets.tasks.sla_sweep`). It takes
everything due up to now, not what falls inside this minute, so a sweep that
runs late, a beat that restarts, or a clock change (the sweep's schedule is
an interval counted in UTC) skips nothing. Each alert is a TicketAlert row,
unique per (ticket, kind, clock, due time) and written under the ticket's row
lock in the transaction that owes its messages, so a sweep run twice, or by
two beats at once, owes each message once.
"""

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, DateTimeField, Exists, F, OuterRef, Q, Value, When
from django.utils import timezone

from afterhours.privacy import mask_email, mask_phone
from incidents.models import Incident
from notifications.models import Notification
from notifications.services import notification_enqueue

from . import scripts
from .models import Escalation, Priority, Ticket, TicketAlert, TicketEvent
from .services import next_update_display
from .sla import REMINDER_LEAD

logger = logging.getLogger(__name__)

# A breach pages support on-call for these; a P2 breach is tagged and listed.
PAGED_ON_BREACH = frozenset({Priority.P0, Priority.P1})
# Bounds one sweep's work; what is left is taken by the next minute's sweep.
SWEEP_LIMIT = 500


@dataclass
class SweepResult:
    reminders: int = 0
    breaches: int = 0

    @property
    def total(self) -> int:
        return self.reminders + self.breaches


def sla_sweep(*, now: dt.datetime | None = None) -> SweepResult:
    """Write every reminder and breach owed up to `now`, each once.

    Locks each ticket row in turn, in its own transaction.
    """
    now = now or timezone.now()
    result = SweepResult()
    for ticket_id in _owing_ids(now):
        with transaction.atomic():
            ticket = Ticket.objects.select_for_update().filter(pk=ticket_id).first()
            if ticket is None:
                continue
            for alert in _alerts_owed(ticket, now):
                if alert.kind == TicketAlert.Kind.BREACH:
                    _breach(ticket, alert)
                    result.breaches += 1
                else:
                    _remind(ticket, alert)
                    result.reminders += 1
    if result.total:
        logger.info(
            "SLA sweep: reminders=%d breaches=%d", result.reminders, result.breaches
        )
    return result


def _owing_ids(now: dt.datetime) -> list[int]:
    """Tickets with a reminder or breach owed and not yet written."""

    def written(kind: str, clock: str, due_field: str):
        return Exists(
            TicketAlert.objects.filter(
                ticket=OuterRef("pk"),
                kind=kind,
                clock=clock,
                due_at=OuterRef(due_field),
            )
        )

    # Each priority reminds its own lead time ahead of the due time.
    horizon = Case(
        *[
            When(priority=priority, then=Value(now + lead))
            for priority, lead in REMINDER_LEAD.items()
        ],
        output_field=DateTimeField(),
    )
    owing = Q()
    for clock, due_field, running in (
        (TicketAlert.Clock.ACKNOWLEDGE, "acknowledge_due", Q(acknowledged_at=None)),
        (
            TicketAlert.Clock.NEXT_UPDATE,
            "next_update_due",
            # Until acknowledged, a next update due no later than the
            # acknowledgement is the same promise (see _alerts_owed).
            Q(acknowledged_at__isnull=False)
            | Q(acknowledge_due=None)
            | Q(next_update_due__gt=F("acknowledge_due")),
        ),
    ):
        breach = Q(**{f"{due_field}__lte": now}) & ~written(
            TicketAlert.Kind.BREACH, clock, due_field
        )
        reminder = Q(
            **{f"{due_field}__gt": now, f"{due_field}__lte": F("reminder_horizon")}
        ) & ~written(TicketAlert.Kind.REMINDER, clock, due_field)
        owing |= running & (breach | reminder)
    return list(
        Ticket.objects.annotate(reminder_horizon=horizon)
        .filter(owing, clock_paused_at=None)
        .exclude(status__in=[Ticket.Status.RESOLVED, Ticket.Status.CLOSED])
        .order_by("next_update_due", "pk")
        .values_list("pk", flat=True)[:SWEEP_LIMIT]
    )


def _alerts_owed(ticket: Ticket, now: dt.datetime) -> list[TicketAlert]:
    """Insert the alerts owed on this (locked) ticket; the new ones only."""
    if ticket.is_closed or ticket.clock_paused:
        return []
    clocks = []
    if ticket.acknowledged_at is None and ticket.acknowledge_due is not None:
        clocks.append((TicketAlert.Clock.ACKNOWLEDGE, ticket.acknowledge_due))
    if ticket.next_update_due is not None and not (
        # Until acknowledged, a next update due with the acknowledgement (P2)
        # is the same promise: one alert, not two.
        clocks and ticket.next_update_due <= ticket.acknowledge_due
    ):
        clocks.append((TicketAlert.Clock.NEXT_UPDATE, ticket.next_update_due))

    created = []
    for clock, due in clocks:
        if due <= now:
            kind = TicketAlert.Kind.BREACH
        elif due - REMINDER_LEAD[Priority(ticket.priority)] <= now:
            kind = TicketAlert.Kind.REMINDER
        else:
            continue
        # Limitation: a sweep that first runs after the due time writes the
        # breach only; the reminder it missed would arrive after the fact.
        try:
            with transaction.atomic():
                alert = TicketAlert.objects.create(
                    ticket=ticket,
                    kind=kind,
                    clock=clock,
                    due_at=due,
                    priority=ticket.priority,
                    created_at=now,
                )
        except IntegrityError:
            continue
        created.append(alert)
    return created


def _remind(ticket: Ticket, alert: TicketAlert) -> None:
    """Tell the owner (or, with no owner to write to, support on-call)."""
    sent = _send_owner(ticket, alert, scripts.SLA_REMINDER)
    if not sent:
        sent = _send_oncall(ticket, alert, scripts.SLA_REMINDER)
    _record(ticket, alert, "sla_reminder", sent)


def _breach(ticket: Ticket, alert: TicketAlert) -> None:
    """Page support on-call for P0/P1; tag every breached ticket for the list."""
    sent = []
    if alert.priority in PAGED_ON_BREACH and not _incident_owns_updates(ticket, alert):
        sent += _send_oncall(ticket, alert, scripts.SLA_BREACH)
    sent += _send_owner(ticket, alert, scripts.SLA_BREACH)
    ticket.sla_breached_at = ticket.sla_breached_at or alert.created_at
    if Escalation.SLA_BREACHED not in ticket.escalations:
        ticket.escalations = sorted({*ticket.escalations, Escalation.SLA_BREACHED})
    ticket.save(update_fields=["sla_breached_at", "escalations", "updated_at"])
    _record(ticket, alert, "sla_breach", sent)
    logger.warning(
        "SLA breach ticket=%s priority=%s clock=%s paged=%s",
        ticket.pk,
        alert.priority,
        alert.clock,
        alert.priority in PAGED_ON_BREACH,
    )


def _incident_owns_updates(ticket: Ticket, alert: TicketAlert) -> bool:
    """A late update on a ticket linked to an open incident is the incident's.

    Its updates come from the incident, whose own clock pages on-call once
    per incident; paging per ticket too would wake them once per report.
    """
    if alert.clock != TicketAlert.Clock.NEXT_UPDATE or ticket.incident_id is None:
        return False
    return ticket.incident.status != Incident.Status.RESOLVED


def _text(ticket: Ticket, alert: TicketAlert, template: str) -> str:
    return template.format(
        reference=ticket.reference,
        priority=alert.priority,
        clock=scripts.SLA_CLOCK_WORDS[alert.clock],
        due=next_update_display(ticket=ticket, moment=alert.due_at),
        business=ticket.business.name if ticket.business_id else "business unknown",
    )


def _send_owner(ticket: Ticket, alert: TicketAlert, template: str) -> list[str]:
    owner = ticket.owner
    if owner is None or not owner.email:
        return []
    notification, _ = notification_enqueue(
        channel=Notification.Channel.EMAIL,
        reason=Notification.Reason.SLA_ALERT,
        recipient=owner.email,
        subject=scripts.SLA_REMINDER_SUBJECT.format(
            reference=ticket.reference,
            clock=scripts.SLA_CLOCK_WORDS[alert.clock],
            due=next_update_display(ticket=ticket, moment=alert.due_at),
        ),
        body=_text(ticket, alert, template),
        dedupe_key=f"sla_alert:{alert.pk}:email:{owner.email.lower()}",
        ticket=ticket,
    )
    return [f"email to the owner {mask_email(owner.email)}"]


def _send_oncall(ticket: Ticket, alert: TicketAlert, template: str) -> list[str]:
    number = settings.SUPPORT_ONCALL_PHONE
    if not number:
        return []
    notification_enqueue(
        channel=Notification.Channel.SMS,
        reason=Notification.Reason.SLA_ALERT,
        recipient=number,
        body=_text(ticket, alert, template),
        dedupe_key=f"sla_alert:{alert.pk}:sms:{number}",
        ticket=ticket,
    )
    return [f"SMS to support on-call {mask_phone(number)}"]


def _record(ticket: Ticket, alert: TicketAlert, kind: str, sent: list[str]) -> None:
    clock = scripts.SLA_CLOCK_WORDS[alert.clock]
    due = next_update_display(ticket=ticket, moment=alert.due_at)
    if alert.kind == TicketAlert.Kind.BREACH:
        what = f"{alert.priority} {clock} was due by {due} and is late"
        if alert.priority not in PAGED_ON_BREACH:
            what += "; tagged sla_breached"
    else:
        what = f"{alert.priority} {clock} due by {due}"
    alert.detail = "; ".join([what, *sent]) if sent else f"{what}; no one to tell"
    alert.save(update_fields=["detail"])
    TicketEvent.objects.create(ticket=ticket, kind=kind, detail=alert.detail)
    if not sent and alert.kind == TicketAlert.Kind.REMINDER:
        logger.warning("SLA reminder for ticket=%s: no owner or on-call", ticket.pk)
