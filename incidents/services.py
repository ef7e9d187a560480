"""Writes on incidents: open one, post an update and fan it out, the clock.

An incident has one owner and a promised next-update time. Every
customer-facing update carries the next one, passes the never-say check (or
is sent anyway with a logged reason) and reaches the affected businesses
through the outbox: an outbound message on each open linked ticket with an
email to its requester, and an email to the businesses' contacts. The clock
(`incident_clock_check`, run by beat every minute) reminds the owner before
an update is due and pages support on-call when it is late, once per due
time.

Every function that writes runs in a transaction and only writes rows:
mail and SMS are outbox rows (`notification_enqueue`), sent after commit.
"""

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Iterable
from email.utils import make_msgid
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import Business, Contact, OnCallContact
from afterhours.privacy import mask_email, mask_phone
from notifications.models import Notification
from notifications.services import notification_enqueue
from tickets import scripts as ticket_scripts
from tickets.guardrail import Finding, check_outgoing
from tickets.models import (
    SCRIPT_PLACEHOLDERS,
    ReplyScript,
    Ticket,
    TicketEvent,
    TicketMessage,
    script_placeholder_errors,
)
from tickets.sla import DEFAULT_ZONE, next_update_after

from .models import Component, Incident, IncidentClockAlert, IncidentUpdate

logger = logging.getLogger(__name__)

Status = Incident.Status

OPEN_TICKET_STATUSES = (
    Ticket.Status.NEW,
    Ticket.Status.WAITING_ON_CUSTOMER,
    Ticket.Status.OPEN,
)
# The owner is reminded this long before a customer update is due.
REMINDER_LEAD = dt.timedelta(minutes=10)

# An update starts from the tickets app's reply script for its status
# (ReplyScript rows, editable in admin, seeded from the field guide), with
# the same placeholders: {next_update} becomes the time in each recipient's
# own zone, {reference} the ticket's. The field guide has no script for
# mitigating and monitoring; these are written in the same voice and pass
# the never-say check.
UPDATE_SCRIPT_SLUGS = {
    Status.INVESTIGATING: "acknowledgement",
    Status.IDENTIFIED: "status-identified",
    Status.RESOLVED: "resolved",
}
UPDATE_SCRIPTS_HERE = {
    Status.MITIGATING: (
        "We're applying a fix and delayed notifications are starting to "
        "arrive. Some calls may still be affected. Next update by "
        "{next_update}. If needed, {workaround}."
    ),
    Status.MONITORING: (
        "A fix is in place and we're watching call intake and notifications "
        "closely. Next update by {next_update}. If you notice a missing or "
        "late notification, reply here with the caller number and time."
    ),
}
NEXT_UPDATE_PLACEHOLDER = "{next_update}"
# The stored update is its public text (status page, portal, admin
# timeline): written for no one reader, so it names no business and no
# ticket, and gives times in the incident's public zone, named.
# Limitation: the portal shows this text as stored, so a business in
# another zone reads the update's next-update time in the public zone
# (named) beside its own-zone times; its emails use its own zone.
PUBLIC_VALUES = {
    "reference": "your ticket reference",
    "business": "your business",
    "name": "everyone",
}
# A promise further out than this is a typo (9999-12-31), not a plan.
MAX_NEXT_UPDATE_AHEAD = dt.timedelta(days=7)

REMINDER_SMS = (
    "afterhours incident #{id} ({title}): customer update due by {due} "
    "({minutes} min). Post it from the incident page."
)
ESCALATION_SMS = (
    "afterhours incident #{id} ({title}): customer update was due {due} and "
    "is late. Owner: {owner}."
)


class IncidentUpdateRefused(Exception):
    """The update cannot go out as written; the message says why."""


class NextUpdateRequired(IncidentUpdateRefused):
    """A customer-facing update without a next-update time in the future."""


class IncidentAlreadyResolved(IncidentUpdateRefused):
    """Updates stop at resolution; the follow-up field says the rest."""


class GuardrailBlocked(IncidentUpdateRefused):
    """The never-say check found words we cannot stand behind."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        words = "; ".join(f'"{f.words}": {f.why}' for f in findings)
        super().__init__(f"held by the never-say check: {words}")


class IncidentAlreadyOpen(Exception):
    """An incident for this component is open already."""

    def __init__(self, incident: Incident):
        self.incident = incident
        super().__init__(f"incident {incident.pk} is open for {incident.component}")


# --- Opening -----------------------------------------------------------------


def incident_open(
    *,
    title: str,
    priority: str,
    opened_at: dt.datetime | None = None,
    component: str = "",
    components: Iterable[str] = (),
    impact: str = "",
    owner=None,
    businesses: Iterable[Business] = (),
    opened_by_health_check: bool = False,
    note: str = "",
) -> Incident:
    """Open an incident, due its first update at the priority's cadence.

    `component` keys the incident for correlation and health checks; at
    most one incident is open per component, and a second raises
    IncidentAlreadyOpen with the open one (use `incident_open_for_component`
    to get or open). `note`, when given, starts the internal timeline.
    """
    opened_at = opened_at or timezone.now()
    if component and component not in Component.values:
        raise ValueError(f"unknown component {component!r}")
    parts = list(dict.fromkeys([component, *components] if component else components))
    try:
        with transaction.atomic():
            incident = Incident.objects.create(
                title=title[:200],
                priority=priority,
                component=component,
                components=parts,
                impact=impact,
                owner=owner,
                opened_at=opened_at,
                next_update_due=next_update_after(
                    priority=priority, moment=opened_at, business=None
                ),
                opened_by_health_check=opened_by_health_check,
            )
    except IntegrityError:
        existing = _open_incident_for(component) if component else None
        if existing is None:
            raise
        raise IncidentAlreadyOpen(existing) from None
    businesses = list(businesses)
    if businesses:
        incident.affected_businesses.add(*businesses)
    if note:
        IncidentUpdate.objects.create(
            incident=incident,
            status=incident.status,
            body=note,
            customer_facing=False,
            created_at=opened_at,
        )
    logger.info(
        "incident opened id=%s component=%s priority=%s health_check=%s",
        incident.pk,
        component or "-",
        priority,
        opened_by_health_check,
    )
    return incident


def incident_open_for_component(
    *,
    component: str,
    priority: str,
    opened_at: dt.datetime | None = None,
    title: str = "",
    impact: str = "",
    businesses: Iterable[Business] = (),
    opened_by_health_check: bool = False,
    note: str = "",
) -> tuple[Incident, bool]:
    """The open incident for `component`, opened if there is none.

    Takes the component's lock (`component_lock`) for the rest of the
    caller's transaction, so two workers never open two incidents for one
    part. Returns (incident, opened).
    """
    with transaction.atomic():
        component_lock(component)
        existing = _open_incident_for(component)
        if existing is not None:
            return existing, False
        try:
            incident = incident_open(
                title=title or component_title(component),
                priority=priority,
                opened_at=opened_at,
                component=component,
                impact=impact,
                businesses=businesses,
                opened_by_health_check=opened_by_health_check,
                note=note,
            )
        except IncidentAlreadyOpen as exc:
            return exc.incident, False
    return incident, True


def component_title(component: str) -> str:
    label = str(Component(component).label)
    return f"{label[:1].upper()}{label[1:]}: reports from several customers"


def component_lock(component: str) -> None:
    """Hold a lock on `component` until the current transaction ends.

    PostgreSQL: a transaction-level advisory lock. Elsewhere (SQLite, the
    embedded default) the database serialises writers itself and the
    one-open-incident-per-component constraint is the guard.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("component_lock needs a transaction to hold it")
    if connection.vendor != "postgresql":
        return
    digest = hashlib.blake2b(
        f"afterhours.incidents.component:{component}".encode(), digest_size=8
    ).digest()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s)",
            [int.from_bytes(digest, "big", signed=True)],
        )


def _open_incident_for(component: str) -> Incident | None:
    return (
        Incident.objects.filter(component=component)
        .exclude(status=Status.RESOLVED)
        .order_by("opened_at", "id")
        .first()
    )


# --- Updates -----------------------------------------------------------------


def incident_post_update(
    *,
    incident: Incident,
    author,
    status: str,
    body: str,
    next_update_at: dt.datetime | None,
    customer_facing: bool = True,
    override_reason: str = "",
    now: dt.datetime | None = None,
) -> IncidentUpdate:
    """Post an update: check it, move the incident, fan it out.

    A customer-facing update needs a next-update time in the future (not
    for a resolution) and passes the never-say check; findings hold it
    (GuardrailBlocked) unless `override_reason` says why it goes anyway,
    which is logged and kept on the update. A resolution with no words
    uses the field guide's resolved script, and resolves the open linked
    tickets after telling them. Internal notes (customer_facing=False) move
    the status but not the promise. Locks the incident row.
    """
    now = now or timezone.now()
    status = Status(status)
    text = (body or "").strip()
    if not text and status == Status.RESOLVED:
        text = update_script(status=Status.RESOLVED)
    if not text:
        raise IncidentUpdateRefused("an update needs some words")
    if next_update_at is not None and timezone.is_naive(next_update_at):
        raise ValueError("next_update_at must be an aware datetime")
    if status == Status.RESOLVED:
        if not customer_facing:
            raise IncidentUpdateRefused("a resolution is told to the customers")
        next_update_at = None
    elif customer_facing:
        if next_update_at is None:
            raise NextUpdateRequired(
                "every customer-facing update must carry a next-update time"
            )
        if next_update_at <= now:
            raise NextUpdateRequired("the next-update time must be in the future")
        if next_update_at > now + MAX_NEXT_UPDATE_AHEAD:
            raise NextUpdateRequired(
                f"the next-update time must be within {MAX_NEXT_UPDATE_AHEAD.days} "
                f"days (by {now + MAX_NEXT_UPDATE_AHEAD:%Y-%m-%d %H:%M} UTC); "
                "promise a nearer update and say then when the next one is"
            )
    errors = script_placeholder_errors(text)
    if errors:
        raise IncidentUpdateRefused("; ".join(errors))
    if NEXT_UPDATE_PLACEHOLDER in text and next_update_at is None:
        raise IncidentUpdateRefused(
            f"the text names a next-update time ({NEXT_UPDATE_PLACEHOLDER}) but "
            "the update has none"
        )

    public = update_text(
        body=text,
        next_update_at=next_update_at,
        zone=incident_public_zone(incident=incident),
        reference=now,
        values=PUBLIC_VALUES,
    )
    findings: list[Finding] = []
    if customer_facing:
        findings = check_outgoing(
            update_text(
                body=text, next_update_at=next_update_at, zone=dt.UTC, reference=now
            )
        )
        if findings and not override_reason.strip():
            raise GuardrailBlocked(findings)

    with transaction.atomic():
        # no_key: tickets and outbox rows that point at the incident can
        # still be written while it is locked (correlation never waits here).
        locked = Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)
        if not locked.is_open:
            raise IncidentAlreadyResolved(f"incident {locked.pk} is resolved")
        update = IncidentUpdate.objects.create(
            incident=locked,
            status=status,
            body=public,
            customer_facing=customer_facing,
            next_update_at=next_update_at,
            author=author,
            created_at=now,
            guardrail_findings=[{"words": f.words, "why": f.why} for f in findings],
            override_reason=override_reason.strip() if findings else "",
        )
        locked.status = status
        if customer_facing:
            locked.next_update_due = next_update_at
        if status == Status.RESOLVED:
            locked.resolved_at = now
            locked.next_update_due = None
        locked.save(update_fields=["status", "next_update_due", "resolved_at"])
        if findings:
            logger.warning(
                "incident update sent despite never-say findings incident=%s "
                "update=%s author=%s words=%s reason=%s",
                locked.pk,
                update.pk,
                getattr(author, "pk", None),
                " | ".join(f.words for f in findings),
                update.override_reason,
            )
        told = (
            incident_update_fan_out(update=update, body=text) if customer_facing else 0
        )
        if status == Status.RESOLVED:
            _tickets_resolve(incident=locked, author=author, now=now)

    for field in ("status", "next_update_due", "resolved_at"):
        setattr(incident, field, getattr(locked, field))
    logger.info(
        "incident update id=%s incident=%s status=%s customer_facing=%s told=%s "
        "next_update=%s",
        update.pk,
        locked.pk,
        status,
        customer_facing,
        told,
        next_update_at.isoformat() if next_update_at else "-",
    )
    return update


def incident_update_fan_out(*, update: IncidentUpdate, body: str | None = None) -> int:
    """Owe a customer-facing update to everyone the incident affects.

    Each open linked ticket gets an outbound message and an email to its
    requester, threaded on the ticket; each contact and on-call contact of
    the affected businesses not already told on a ticket gets an email.
    `body` is the update's words as written, placeholders unfilled, so
    times are written in each business's zone; without it, the stored
    public text is sent as it stands. Idempotent per (update, ticket) and
    (update, address). Locks the tickets; call inside a transaction.
    Returns how many messages were newly owed.
    """
    template = body if body is not None else as_template(update.body)
    incident = update.incident
    told: set[str] = set()
    owed = 0
    tickets = (
        Ticket.objects.filter(incident=incident, status__in=OPEN_TICKET_STATUSES)
        .select_related("business")
        .select_for_update(of=("self",))
        .order_by("id")
    )
    for ticket in tickets:
        recipient = ticket.requester_email
        if recipient:
            told.add(recipient.lower())
        owed += _tell_ticket(update=update, ticket=ticket, body=template)

    businesses = incident.affected_businesses.order_by("id")
    for business in businesses:
        for address in _contact_addresses(business):
            if address.lower() in told:
                continue
            told.add(address.lower())
            owed += _tell_contact(
                update=update, business=business, address=address, body=template
            )
    return owed


def update_script(*, status: str) -> str:
    """The words an update of `status` starts from, placeholders unfilled."""
    slug = UPDATE_SCRIPT_SLUGS.get(Status(status))
    if slug is None:
        return UPDATE_SCRIPTS_HERE[Status(status)]
    script = ReplyScript.objects.filter(slug=slug).first()
    return script.body if script is not None else ticket_scripts.DEFAULT_SCRIPTS[slug]


def update_text(
    *,
    body: str,
    next_update_at: dt.datetime | None,
    zone: ZoneInfo | dt.tzinfo,
    reference: dt.datetime,
    ticket: Ticket | None = None,
    business: Business | None = None,
    values: dict[str, str] | None = None,
    closing_line: bool = True,
) -> str:
    """An update's words for one reader, placeholders filled.

    The next-update time is written in the reader's zone; text that does
    not name it gets it as a closing sentence (unless `closing_line` is
    off), so no customer-facing update goes out without it. `values`
    overrides what the other placeholders become (PUBLIC_VALUES for the
    public text). Raises ValueError on a broken placeholder
    (`script_placeholder_errors` tells the agent first).
    """
    when = local_time(next_update_at, zone, reference) if next_update_at else ""
    filled = {
        "next_update": when,
        "reference": ticket.reference if ticket is not None else "",
        "workaround": ticket_scripts.DEFAULT_WORKAROUND,
        "business": business.name if business is not None else "",
        "name": (ticket.requester_name or "").strip().strip('"') if ticket else "",
        **(values or {}),
    }
    text = body.format_map({name: filled[name] for name in SCRIPT_PLACEHOLDERS})
    if closing_line and when and NEXT_UPDATE_PLACEHOLDER not in body:
        text += "\n\n" + ticket_scripts.NEXT_UPDATE_LINE.format(next_update=when)
    return text


def as_template(text: str) -> str:
    """Stored update text as a template: its known placeholders stay ones,
    any other brace is literal.

    Updates stored before their public text was filled kept the raw
    placeholders; filled ones may hold a literal brace. Both read safely.
    """
    template = text.replace("{", "{{").replace("}", "}}")
    for name in SCRIPT_PLACEHOLDERS:
        template = template.replace(f"{{{{{name}}}}}", f"{{{name}}}")
    return template


def update_public_text(*, update: IncidentUpdate, zone: ZoneInfo | dt.tzinfo) -> str:
    """What the status page and the portal show for a stored update.

    The stored text is public already; one stored before that was so still
    has its placeholders, filled here (times in `zone`, named) so no reader
    sees "{next_update}".
    """
    return update_text(
        body=as_template(update.body),
        next_update_at=update.next_update_at,
        zone=zone,
        reference=update.created_at,
        values=PUBLIC_VALUES,
        closing_line=False,
    )


def incident_public_zone(*, incident: Incident) -> ZoneInfo:
    """The zone public text gives times in: the first affected business's
    (by id), else the default. Uses prefetched businesses when there are."""
    first = min(incident.affected_businesses.all(), key=lambda b: b.pk, default=None)
    return first.zone if first is not None else ZoneInfo(DEFAULT_ZONE)


def local_time(
    moment: dt.datetime, zone: ZoneInfo | dt.tzinfo, reference: dt.datetime
) -> str:
    """'11:22 PM EST', with the day when it is not `reference`'s day there,
    and the year when it is not `reference`'s year."""
    local = moment.astimezone(zone)
    seen_from = reference.astimezone(zone)
    text = f"{local:%I:%M %p %Z}".lstrip("0")
    if local.date() != seen_from.date():
        text += f" on {local:%A, %b} {local.day}"
    if local.year != seen_from.year:
        text += f", {local.year}"
    return text


def _tell_ticket(*, update: IncidentUpdate, ticket: Ticket, body: str) -> int:
    incident = update.incident
    if not ticket.requester_email:
        TicketEvent.objects.create(
            ticket=ticket,
            kind="incident_update_withheld",
            detail=f"incident #{incident.pk} update {update.pk}: no address",
        )
        return 0
    zone = ticket.business.zone if ticket.business_id else ZoneInfo(DEFAULT_ZONE)
    name = (ticket.requester_name or "").strip().strip('"')
    paragraphs = [
        ticket_scripts.GREETING.format(name=name)
        if name
        else ticket_scripts.GREETING_NO_NAME,
        update_text(
            body=body,
            next_update_at=update.next_update_at,
            zone=zone,
            reference=update.created_at,
            ticket=ticket,
            business=ticket.business,
        ),
        ticket_scripts.REFERENCE_LINE.format(reference=ticket.reference),
        ticket_scripts.SIGN_OFF.format(team=settings.SUPPORT_FROM_NAME),
    ]
    text = "\n\n".join(paragraphs) + "\n"
    subject = ticket.subject or incident.title
    if not re.match(r"(?i)^re:", subject):
        subject = f"Re: {subject}"
    subject = f"{subject} [{ticket.reference}]"[:998]
    previous = (
        ticket.messages.exclude(direction=TicketMessage.Direction.NOTE)
        .exclude(message_id=None)
        .order_by("-created_at", "-id")
        .first()
    )
    in_reply_to = previous.message_id if previous else ""
    references = " ".join(
        dict.fromkeys([*previous.references.split(), in_reply_to] if previous else [])
    )
    domain = settings.SUPPORT_EMAIL.rpartition("@")[2] or "afterhours.example"
    message_id = make_msgid(idstring=ticket.reference.lower(), domain=domain)
    headers = {
        "Message-ID": message_id,
        "In-Reply-To": in_reply_to,
        "References": references,
    }
    notification, created = notification_enqueue(
        channel=Notification.Channel.EMAIL,
        reason=Notification.Reason.INCIDENT_UPDATE,
        recipient=ticket.requester_email,
        subject=subject,
        body=text,
        headers={name: value for name, value in headers.items() if value},
        dedupe_key=f"incident_update:{update.pk}:ticket:{ticket.pk}",
        ticket=ticket,
        incident=incident,
    )
    if not created:
        return 0
    TicketMessage.objects.create(
        ticket=ticket,
        direction=TicketMessage.Direction.OUTBOUND,
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        from_address=settings.SUPPORT_EMAIL,
        to_address=ticket.requester_email,
        subject=subject,
        body=text,
        author=update.author,
        created_at=update.created_at,
    )
    fields = ["updated_at"]
    if update.next_update_at is not None:
        ticket.next_update_due = update.next_update_at
        fields.append("next_update_due")
    if ticket.acknowledged_at is None:
        ticket.acknowledged_at = update.created_at
        fields.append("acknowledged_at")
    ticket.save(update_fields=fields)
    TicketEvent.objects.create(
        ticket=ticket,
        kind="incident_update",
        actor=update.author,
        detail=f"incident #{incident.pk} {update.status} update {update.pk} "
        f"emailed (notification {notification.pk})",
    )
    return 1


def _tell_contact(
    *, update: IncidentUpdate, business: Business, address: str, body: str
) -> int:
    incident = update.incident
    text = "\n\n".join(
        [
            ticket_scripts.GREETING_NO_NAME,
            update_text(
                body=body,
                next_update_at=update.next_update_at,
                zone=business.zone,
                reference=update.created_at,
                business=business,
            ),
            ticket_scripts.SIGN_OFF.format(team=settings.SUPPORT_FROM_NAME),
        ]
    )
    _, created = notification_enqueue(
        channel=Notification.Channel.EMAIL,
        reason=Notification.Reason.INCIDENT_UPDATE,
        recipient=address,
        subject=f"{incident.title} ({Status(update.status).label})"[:998],
        body=text + "\n",
        dedupe_key=f"incident_update:{update.pk}:email:{address.lower()}"[:255],
        incident=incident,
    )
    if created:
        logger.info(
            "incident update %s owed to contact %s of business %s",
            update.pk,
            mask_email(address),
            business.pk,
        )
    return int(created)


def _contact_addresses(business: Business) -> list[str]:
    addresses = list(
        Contact.objects.filter(business=business)
        .order_by("id")
        .values_list("email", flat=True)
    ) + list(
        OnCallContact.objects.filter(business=business)
        .exclude(email="")
        .order_by("order", "id")
        .values_list("email", flat=True)
    )
    unique: dict[str, str] = {}
    for address in addresses:
        unique.setdefault(address.lower(), address)
    return list(unique.values())


def _tickets_resolve(*, incident: Incident, author, now: dt.datetime) -> None:
    # Imported here: tickets.services imports incidents.correlation, which
    # imports this module.
    from tickets.services import ticket_status_change

    tickets = (
        Ticket.objects.filter(incident=incident, status__in=OPEN_TICKET_STATUSES)
        .select_for_update()
        .order_by("id")
    )
    for ticket in tickets:
        # Through the tickets app, so the SLA clock stops the way it does
        # when an agent resolves a ticket; a reply from the customer reopens.
        ticket_status_change(
            ticket=ticket, status=Ticket.Status.RESOLVED, actor=author, at=now
        )
        TicketEvent.objects.create(
            ticket=ticket,
            kind="resolved",
            actor=author,
            detail=f"incident #{incident.pk} resolved",
        )


# --- The incident clock ------------------------------------------------------


def incident_clock_check(*, now: dt.datetime | None = None) -> list[IncidentClockAlert]:
    """Remind before a customer update is due; escalate when it is late.

    For each open incident: within REMINDER_LEAD of its next update, the
    owner is reminded by email (support on-call by SMS when there is no
    owner address); past it, support on-call is paged by SMS. Each once per
    (incident, kind, due time), however many beats run this at once. A
    reminder whose moment passed while the beat was down is skipped: the
    escalation says more. Returns the alerts newly raised.
    """
    now = now or timezone.now()
    incidents = (
        Incident.objects.exclude(status=Status.RESOLVED)
        .filter(next_update_due__isnull=False, next_update_due__lte=now + REMINDER_LEAD)
        .select_related("owner")
        .order_by("next_update_due", "id")
    )
    raised = []
    for incident in incidents:
        due = incident.next_update_due
        kind = (
            IncidentClockAlert.Kind.ESCALATION
            if now >= due
            else IncidentClockAlert.Kind.REMINDER
        )
        alert = _clock_alert(incident=incident, kind=kind, due=due, now=now)
        if alert is not None:
            raised.append(alert)
    return raised


def _clock_alert(
    *, incident: Incident, kind: str, due: dt.datetime, now: dt.datetime
) -> IncidentClockAlert | None:
    with transaction.atomic():
        # The unique row is the claim: a second beat inserting the same one
        # waits for the first to commit, then finds it and owes nothing.
        alert, created = IncidentClockAlert.objects.get_or_create(
            incident=incident, kind=kind, due_at=due
        )
        if not created:
            return None
        due_text = f"{due.astimezone(dt.UTC):%H:%M} UTC"
        stamp = f"{due.astimezone(dt.UTC):%Y%m%dT%H%M%S}"
        owner = incident.owner
        if kind == IncidentClockAlert.Kind.REMINDER and owner and owner.email:
            alert.notification, _ = notification_enqueue(
                channel=Notification.Channel.EMAIL,
                reason=Notification.Reason.SLA_ALERT,
                recipient=owner.email,
                subject=f"Incident #{incident.pk}: customer update due by {due_text}",
                body=REMINDER_SMS.format(
                    id=incident.pk,
                    title=incident.title,
                    due=due_text,
                    minutes=_minutes(due - now),
                ),
                dedupe_key=f"incident_clock:{incident.pk}:{kind}:{stamp}:owner",
                incident=incident,
            )
            alert.detail = f"owner {owner.pk} reminded by email"
        elif settings.SUPPORT_ONCALL_PHONE:
            reminder = kind == IncidentClockAlert.Kind.REMINDER
            template = REMINDER_SMS if reminder else ESCALATION_SMS
            body = template.format(
                id=incident.pk,
                title=incident.title[:60],
                due=due_text,
                minutes=_minutes(due - now),
                owner=owner.get_username() if owner else "none",
            )
            alert.notification, _ = notification_enqueue(
                channel=Notification.Channel.SMS,
                reason=Notification.Reason.SLA_ALERT,
                recipient=settings.SUPPORT_ONCALL_PHONE,
                body=body,
                dedupe_key=f"incident_clock:{incident.pk}:{kind}:{stamp}:oncall",
                incident=incident,
            )
            alert.detail = (
                f"support on-call {mask_phone(settings.SUPPORT_ONCALL_PHONE)} paged"
            )
        else:
            alert.detail = "nobody to tell: no owner address, no support on-call phone"
        alert.save(update_fields=["notification", "detail"])

    log = logger.warning if kind == IncidentClockAlert.Kind.ESCALATION else logger.info
    log(
        "incident clock %s incident=%s due=%s alert=%s: %s",
        kind,
        incident.pk,
        due.isoformat(),
        alert.pk,
        alert.detail,
    )
    return alert


def _minutes(delta: dt.timedelta) -> int:
    return max(0, round(delta.total_seconds() / 60))
