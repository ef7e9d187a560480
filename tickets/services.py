"""Writes on tickets: open from email, add a reply, first reply, P0 page,
the SLA clock (pause, resume, priority change) and an agent's reply.

Every function here runs inside the caller's transaction (the inbound email
processing, the admin's request) and only writes rows: outgoing mail and SMS
are outbox rows (`notification_enqueue`), sent after commit. A ticket's
history is written as TicketEvent rows as it happens.
"""

import datetime as dt
import logging
import re
from dataclasses import dataclass
from email.utils import make_msgid
from zoneinfo import ZoneInfo

from dateutil import parser as date_parser
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from django.utils.text import Truncator

from accounts.models import Business, Contact, OnCallContact
from afterhours.privacy import mask_email, mask_phone
from incidents.correlation import ticket_correlate
from intake.email import ParsedEmail
from intake.models import InboundEmail
from notifications.models import Notification
from notifications.services import notification_enqueue

from . import scripts, sla
from .guardrail import Finding, check_outgoing
from .models import (
    REQUIRED_FACTS,
    Priority,
    Ticket,
    TicketAttachment,
    TicketEvent,
    TicketMessage,
)
from .selectors import FREE_MAIL_DOMAINS, business_for_sender, matching_report_count
from .sla import DEFAULT_ZONE, due_times, next_update_after
from .triage import extract_facts, merge_facts, triage

logger = logging.getLogger(__name__)

# Several P0 reports from one business within this window page its on-call
# person once.
BUSINESS_PAGE_QUIET = dt.timedelta(minutes=30)
PRIORITY_RANK = {Priority.P0: 0, Priority.P1: 1, Priority.P2: 2}
# Reports of the same component within this window count as matching ones.
MATCHING_REPORTS_WINDOW = dt.timedelta(minutes=60)
# The zone words customers write, for rendering times when no business is
# matched and for reading an unclear start time back to them.
ZONE_WORDS = {
    r"\b(?:eastern|e[sd]?t)\b": "America/New_York",
    r"\b(?:central|c[sd]?t)\b": "America/Chicago",
    r"\b(?:mountain|m[sd]?t)\b": "America/Denver",
    r"\b(?:pacific|p[sd]?t)\b": "America/Los_Angeles",
}
TAG_RE_TEMPLATE = r"\[{prefix}-(\d+)\]"


class ReplyError(Exception):
    """An agent's reply that was not sent; the message says why."""


class ReplyInvalid(ReplyError):
    """The reply lacks something every customer update needs."""


class ReplyBlocked(ReplyError):
    """The never-say check found words we can't stand behind.

    `findings` lists each with why; the reply goes out only when the agent
    gives a reason to send it anyway.
    """

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__(
            "not sent: "
            + "; ".join(f'"{finding.words}": {finding.why}' for finding in findings)
        )


@dataclass(frozen=True)
class FirstReply:
    recipient: str
    subject: str
    body: str
    message_id: str
    in_reply_to: str
    references: str

    @property
    def headers(self) -> dict[str, str]:
        headers = {
            "Message-ID": self.message_id,
            "In-Reply-To": self.in_reply_to,
            "References": self.references,
            # RFC 3834: tells other autoresponders not to answer us.
            "Auto-Submitted": "auto-replied",
        }
        return {name: value for name, value in headers.items() if value}


# --- Threading ---------------------------------------------------------------


def ticket_find_for_email(*, parsed: ParsedEmail) -> Ticket | None:
    """The ticket an email answers, or None for a new conversation.

    Message-IDs we know (In-Reply-To, then References, nearest first) win;
    the subject tag counts only when the sender belongs to that ticket's
    business or is its requester, since anyone can type a reference.
    """
    # Limitation: a reply processed before the message it answers (tasks
    # run out of order) finds no known Message-ID and opens its own ticket;
    # an agent merges them.
    ids = parsed.thread_ids
    if ids:
        known = {
            message_id: ticket_id
            for message_id, ticket_id in TicketMessage.objects.filter(
                message_id__in=ids
            ).values_list("message_id", "ticket_id")
        }
        for message_id in ids:
            if message_id in known:
                return Ticket.objects.get(pk=known[message_id])

    for reference in _subject_references(parsed.subject):
        ticket = Ticket.objects.filter(reference=reference).first()
        if ticket is not None and _sender_belongs(ticket, parsed.from_address):
            return ticket
    return None


def _subject_references(subject: str) -> list[str]:
    prefix = re.escape(settings.TICKET_REFERENCE_PREFIX)
    return [
        f"{settings.TICKET_REFERENCE_PREFIX}-{number}"
        for number in re.findall(TAG_RE_TEMPLATE.format(prefix=prefix), subject)
    ]


def _sender_belongs(ticket: Ticket, address: str) -> bool:
    if not address:
        return False
    if ticket.requester_email and ticket.requester_email.lower() == address.lower():
        return True
    if ticket.business_id is None:
        return False
    return (
        Contact.objects.filter(
            business_id=ticket.business_id, email__iexact=address
        ).exists()
        or OnCallContact.objects.filter(
            business_id=ticket.business_id, email__iexact=address
        ).exists()
    )


# --- Opening and replies -----------------------------------------------------


def ticket_open_from_email(
    *, parsed: ParsedEmail, inbound_email: InboundEmail, received_at: dt.datetime
) -> Ticket:
    """Open a ticket from a customer's first message.

    Matches the business, extracts the five facts, triages, records the
    message and its attachments, queues the first reply and, for P0, pages
    on-call. Call inside a transaction.
    """
    text = parsed.text
    business, facts = _business_and_facts(
        parsed=parsed, text=text, received_at=received_at, business=None
    )
    ticket = Ticket(
        business=business,
        requester_email=parsed.reply_address,
        requester_name=parsed.from_name[:200],
        subject=_strip_tags(parsed.subject)[:998],
        received_at=received_at,
    )
    _set_facts(ticket, facts)
    ticket.save()
    TicketEvent.objects.create(
        ticket=ticket,
        kind="opened",
        detail=f"from inbound email {inbound_email.pk}"
        + ("" if business else "; business not matched, left for an agent"),
    )
    message = _inbound_message(ticket, parsed, inbound_email, received_at)

    result = _triage(ticket=ticket, facts=facts, text=text, received_at=received_at)
    ticket.priority = result.priority
    ticket.priority_reasons = list(result.reasons)
    ticket.escalations = sorted(set(result.escalations))
    ticket.component = result.component or ""
    due = due_times(
        priority=ticket.priority, received_at=received_at, business=business
    )
    ticket.acknowledge_due = due.acknowledge_by
    ticket.next_update_due = due.next_update_by
    ticket.save()
    TicketEvent.objects.create(
        ticket=ticket, kind="triaged", detail=_triage_detail(ticket, result)
    )
    ticket_correlate(ticket=ticket)
    logger.info(
        "ticket opened id=%s reference=%s priority=%s business=%s missing=%s",
        ticket.pk,
        ticket.reference,
        ticket.priority,
        ticket.business_id,
        ",".join(ticket.missing_facts) or "-",
    )

    first_reply_queue(ticket=ticket, message=message)
    if ticket.priority == Priority.P0:
        p0_page_queue(ticket=ticket)
    return ticket


def ticket_add_reply(
    *,
    ticket: Ticket,
    parsed: ParsedEmail,
    inbound_email: InboundEmail,
    received_at: dt.datetime,
) -> Ticket:
    """Add a customer's reply: fill the facts still missing, re-triage.

    Facts already known are kept; priority may rise (and a rise to P0
    pages on-call) but never falls by itself; no second first reply.
    Locks the ticket row; call inside a transaction.
    """
    ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
    _inbound_message(ticket, parsed, inbound_email, received_at)
    if ticket.status == Ticket.Status.RESOLVED:
        _clock_reopen(ticket, received_at, actor=None, why="the customer replied")
    if ticket.status in (Ticket.Status.WAITING_ON_CUSTOMER, Ticket.Status.RESOLVED):
        ticket.status = Ticket.Status.OPEN
    # Their answer starts the clock again, before any priority change counts.
    _clock_resume(ticket, received_at, actor=None, why="the customer replied")
    text = parsed.new_text
    business, facts = _business_and_facts(
        parsed=parsed, text=text, received_at=received_at, business=ticket.business
    )
    if ticket.business_id is None and business is not None:
        ticket.business = business
        TicketEvent.objects.create(
            ticket=ticket, kind="business_matched", detail=business.name
        )

    missing_before = ticket.missing_facts
    facts = merge_facts(ticket, facts)
    _set_facts(ticket, facts)
    filled = [fact for fact in missing_before if fact not in ticket.missing_facts]
    if filled:
        TicketEvent.objects.create(
            ticket=ticket, kind="facts_filled", detail=", ".join(filled)
        )

    # The reply's own words with everything known so far: the first
    # message already set the priority, which only an agent lowers.
    result = _triage(ticket=ticket, facts=facts, text=text, received_at=received_at)
    previous = ticket.priority
    ticket.escalations = sorted(set(ticket.escalations) | set(result.escalations))
    ticket.component = ticket.component or result.component or ""
    if PRIORITY_RANK[Priority(result.priority)] < PRIORITY_RANK[Priority(previous)]:
        ticket.priority_reasons = list(result.reasons)
        # The sooner promise of the higher priority counts from the reply.
        _priority_apply(
            ticket,
            priority=result.priority,
            at=received_at,
            reason="triage of the customer's reply",
            actor=None,
        )
        TicketEvent.objects.create(
            ticket=ticket,
            kind="triaged",
            detail=f"raised from {previous}; " + _triage_detail(ticket, result),
        )
    elif result.priority != previous:
        TicketEvent.objects.create(
            ticket=ticket,
            kind="triage_kept",
            detail=f"triage of the reply suggests {result.priority}; kept "
            f"{previous}: priority is lowered only by an agent",
        )
    ticket.save()
    ticket_correlate(ticket=ticket)
    logger.info(
        "ticket reply id=%s inbound_email=%s filled=%s priority=%s",
        ticket.pk,
        inbound_email.pk,
        ",".join(filled) or "-",
        ticket.priority,
    )

    if ticket.priority == Priority.P0 and previous != Priority.P0:
        p0_page_queue(ticket=ticket)
    return ticket


def ticket_add_automatic_note(
    *, ticket: Ticket, parsed: ParsedEmail, inbound_email: InboundEmail, why: str
) -> TicketMessage:
    """Keep automatic mail answering a ticket as an internal note.

    No reply, no triage: an out-of-office or a bounce is context for the
    agent, not a customer's word.
    """
    message = _message_from_email(
        ticket,
        parsed,
        inbound_email,
        direction=TicketMessage.Direction.NOTE,
        body=f"Automatic mail ({why}):\n\n{parsed.text}",
        created_at=inbound_email.received_at,
    )
    TicketEvent.objects.create(
        ticket=ticket, kind="automatic_mail", detail=f"kept as a note: {why}"
    )
    return message


# --- First reply -------------------------------------------------------------


def first_reply_compose(*, ticket: Ticket, message: TicketMessage) -> FirstReply:
    """The acknowledgement for the ticket's priority and the missing facts."""
    zone = _display_zone(ticket)
    next_update = _render_time(ticket.next_update_due, zone, ticket.received_at)
    # The whole display name: shared mailboxes ("Front Desk") read wrong
    # when cut to a first name.
    name = (ticket.requester_name or "").strip().strip('"')
    paragraphs = [
        scripts.GREETING.format(name=name) if name else scripts.GREETING_NO_NAME,
        scripts.script_text(
            slug=scripts.ACKNOWLEDGEMENT_SCRIPT[ticket.priority],
            values=script_values(ticket=ticket, next_update=next_update),
        ),
    ]
    missing = ticket.missing_facts
    if missing:
        questions = [
            f"- {_fact_question(ticket, fact, zone)}"
            for fact in REQUIRED_FACTS
            if fact in missing
        ]
        paragraphs.append("\n".join([scripts.MISSING_FACTS_INTRO, *questions]))
    paragraphs.append(scripts.REFERENCE_LINE.format(reference=ticket.reference))
    paragraphs.append(scripts.SIGN_OFF.format(team=settings.SUPPORT_FROM_NAME))
    body = "\n\n".join(paragraphs) + "\n"

    subject = _strip_tags(message.subject or ticket.subject) or "Your support request"
    # The quoted subject is shortened, never the tag that threads replies.
    subject = Truncator(subject).chars(200)
    if not re.match(r"(?i)^re:", subject):
        subject = f"Re: {subject}"
    subject = f"{subject} [{ticket.reference}]"

    their_id = message.message_id or ""
    references = " ".join(
        dict.fromkeys([*message.references.split(), their_id] if their_id else [])
    )
    domain = settings.SUPPORT_EMAIL.rpartition("@")[2] or "afterhours.example"
    return FirstReply(
        recipient=ticket.requester_email,
        subject=subject[:998],
        body=body,
        message_id=make_msgid(idstring=ticket.reference.lower(), domain=domain),
        in_reply_to=their_id,
        references=references,
    )


def first_reply_queue(*, ticket: Ticket, message: TicketMessage) -> Notification | None:
    """Owe the first reply once per ticket, as an outbox email.

    Nothing is owed when the ticket already had its first reply, when there
    is no address to write to, or when the sender already had
    AUTO_REPLY_LIMIT_PER_HOUR automatic replies in the last hour (a loop
    with a robot that slipped past the automatic-mail checks).
    """
    if ticket.first_reply_sent_at is not None:
        return None
    recipient = ticket.requester_email
    if not recipient:
        TicketEvent.objects.create(
            ticket=ticket, kind="first_reply_withheld", detail="no address to reply to"
        )
        return None
    if settings.SUPPORT_EMAIL and recipient.lower() == settings.SUPPORT_EMAIL.lower():
        TicketEvent.objects.create(
            ticket=ticket, kind="first_reply_withheld", detail="our own address"
        )
        return None
    now = timezone.now()
    # Limitation: the count is not locked, so messages from one sender
    # processed at the same instant by two workers can pass the cap by one.
    recent = Notification.objects.filter(
        channel=Notification.Channel.EMAIL,
        reason=Notification.Reason.FIRST_REPLY,
        recipient__iexact=recipient,
        created_at__gte=now - dt.timedelta(hours=1),
    ).count()
    if recent >= settings.AUTO_REPLY_LIMIT_PER_HOUR:
        TicketEvent.objects.create(
            ticket=ticket,
            kind="first_reply_withheld",
            detail=f"{recent} automatic replies to this sender in the last hour",
        )
        logger.warning(
            "first reply withheld ticket=%s recipient=%s recent=%s",
            ticket.pk,
            mask_email(recipient),
            recent,
        )
        return None

    reply = first_reply_compose(ticket=ticket, message=message)
    notification, created = notification_enqueue(
        channel=Notification.Channel.EMAIL,
        reason=Notification.Reason.FIRST_REPLY,
        recipient=recipient,
        subject=reply.subject,
        body=reply.body,
        headers=reply.headers,
        dedupe_key=f"first_reply:{ticket.pk}:email:{recipient.lower()}",
        ticket=ticket,
    )
    if not created:
        return notification
    TicketMessage.objects.create(
        ticket=ticket,
        direction=TicketMessage.Direction.OUTBOUND,
        message_id=reply.message_id,
        in_reply_to=reply.in_reply_to,
        references=reply.references,
        from_address=settings.SUPPORT_EMAIL,
        to_address=recipient,
        subject=reply.subject,
        body=reply.body,
        created_at=max(now, ticket.received_at),
    )
    # Queued in the outbox counts as acknowledged: the outbox sends it or
    # marks it failed for an agent. A replayed message carries its own Date
    # as arrival, so the acknowledgement is never dated before it.
    ticket.first_reply_sent_at = max(now, ticket.received_at)
    ticket.acknowledged_at = ticket.acknowledged_at or ticket.first_reply_sent_at
    if ticket.missing_facts and ticket.status == Ticket.Status.NEW:
        ticket.status = Ticket.Status.WAITING_ON_CUSTOMER
        # Limitation: the first reply already named the next-update time as
        # the clock stood; if the customer answers late, the next update
        # moves by the time we waited, and the agent's update names it.
        _clock_pause(
            ticket,
            ticket.first_reply_sent_at,
            actor=None,
            why="waiting on the customer for " + ", ".join(ticket.missing_facts),
        )
    ticket.save(
        update_fields=[
            "first_reply_sent_at",
            "acknowledged_at",
            "status",
            *CLOCK_FIELDS,
            "updated_at",
        ]
    )
    TicketEvent.objects.create(
        ticket=ticket,
        kind="first_reply_queued",
        detail=f"notification {notification.pk}; asked for: "
        + (", ".join(ticket.missing_facts) or "nothing, all facts given"),
    )
    return notification


# --- P0 page -----------------------------------------------------------------


def p0_page_queue(*, ticket: Ticket) -> list[Notification]:
    """Page the business's first on-call contact and our own on-call by SMS.

    Idempotent per (ticket, number): a replay or a second rise to P0 owes
    no second page.
    """
    numbers = []
    first = None
    if ticket.business_id is not None:
        first = (
            OnCallContact.objects.filter(business_id=ticket.business_id)
            .exclude(phone="")
            .order_by("order", "id")
            .first()
        )
    if first is not None and _business_page_allowed(ticket, first.phone):
        numbers.append(first.phone)
    if settings.SUPPORT_ONCALL_PHONE:
        numbers.append(settings.SUPPORT_ONCALL_PHONE)

    zone = _display_zone(ticket)
    body = scripts.P0_PAGE.format(
        reference=ticket.reference,
        business=ticket.business.name
        if ticket.business_id
        else scripts.P0_PAGE_UNKNOWN_BUSINESS,
        component=ticket.component or scripts.P0_PAGE_UNKNOWN_COMPONENT,
        due=_render_time(ticket.acknowledge_due, zone, ticket.received_at),
    )
    queued = []
    for number in dict.fromkeys(numbers):
        notification, created = notification_enqueue(
            channel=Notification.Channel.SMS,
            reason=Notification.Reason.P0_PAGE,
            recipient=number,
            body=body,
            dedupe_key=f"p0_page:{ticket.pk}:sms:{number}",
            ticket=ticket,
        )
        if created:
            queued.append(notification)
    if queued:
        TicketEvent.objects.create(
            ticket=ticket,
            kind="p0_paged",
            detail="SMS to " + ", ".join(mask_phone(n.recipient) for n in queued),
        )
        logger.info("P0 paged ticket=%s pages=%s", ticket.pk, len(queued))
    elif not numbers:
        TicketEvent.objects.create(
            ticket=ticket, kind="p0_page_failed", detail="no on-call number to page"
        )
        logger.warning("P0 page: no on-call number for ticket=%s", ticket.pk)
    return queued


def _business_page_allowed(ticket: Ticket, phone: str) -> bool:
    """Whether this P0 may wake the business's own on-call person.

    Only a sender the business knows (one of its contacts, or its own mail
    domain) may: anyone can write a business's phone number into an email,
    and a stranger must not page a plumber at 3 a.m. And one page per
    business per BUSINESS_PAGE_QUIET: several reports of one outage are one
    wake-up; support on-call is still paged for each ticket.
    """
    if not _requester_known_to_business(ticket):
        TicketEvent.objects.create(
            ticket=ticket,
            kind="p0_page_held",
            detail=(
                "the business's on-call was not paged: the sender is not one of "
                "its contacts; confirm the business before paging them"
            ),
        )
        return False
    recent = Notification.objects.filter(
        reason=Notification.Reason.P0_PAGE,
        recipient=phone,
        ticket__business_id=ticket.business_id,
        created_at__gte=timezone.now() - BUSINESS_PAGE_QUIET,
    ).exclude(ticket=ticket)
    # Limitation: two workers opening P0s for one business in the same
    # instant can both page; the quiet window is a courtesy, not a lock.
    if recent.exists():
        TicketEvent.objects.create(
            ticket=ticket,
            kind="p0_page_skipped",
            detail="the business's on-call was paged for another P0 in the last "
            f"{int(BUSINESS_PAGE_QUIET.total_seconds() // 60)} minutes",
        )
        return False
    return True


def _requester_known_to_business(ticket: Ticket) -> bool:
    address = (ticket.requester_email or "").strip().lower()
    if not address or ticket.business_id is None:
        return False
    domain = address.rpartition("@")[2]
    emails = [
        *Contact.objects.filter(business_id=ticket.business_id).values_list(
            "email", flat=True
        ),
        *OnCallContact.objects.filter(business_id=ticket.business_id).values_list(
            "email", flat=True
        ),
    ]
    known = {email.lower() for email in emails if email}
    if address in known:
        return True
    return domain not in FREE_MAIL_DOMAINS and any(
        email.rpartition("@")[2] == domain for email in known
    )


# --- SLA clock ---------------------------------------------------------------

# The fields the clock writes, for callers that save with update_fields.
CLOCK_FIELDS = [
    "acknowledge_due",
    "next_update_due",
    "clock_paused_at",
    "clock_paused_total",
    "acknowledge_remaining",
    "next_update_remaining",
]


def ticket_priority_change(
    *,
    ticket: Ticket,
    priority: str,
    reason: str,
    actor=None,
    at: dt.datetime | None = None,
) -> Ticket:
    """Give the ticket a new priority and recompute its due times.

    A rise keeps whichever promise is sooner, the old one or the new
    priority's counted from `at`; a fall counts the new priority's from
    `at`. A rise to P0 pages on-call. Written on the history with `reason`.
    Locks the ticket row.
    """
    at = at or timezone.now()
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        previous = ticket.priority
        if not _priority_apply(
            ticket, priority=priority, at=at, reason=reason, actor=actor
        ):
            return ticket
        ticket.save()
        logger.info(
            "ticket priority changed id=%s from=%s to=%s actor=%s",
            ticket.pk,
            previous,
            priority,
            getattr(actor, "pk", None),
        )
        if priority == Priority.P0:
            p0_page_queue(ticket=ticket)
    return ticket


def ticket_status_change(
    *,
    ticket: Ticket,
    status: str,
    actor=None,
    at: dt.datetime | None = None,
) -> Ticket:
    """Move the ticket to `status`, stopping or starting the clock with it.

    Waiting on the customer stops the clock (P1/P2); leaving it starts the
    clock with what was left. Reopening a resolved or closed ticket owes the
    customer an update within the priority's period. Locks the ticket row.
    """
    at = at or timezone.now()
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        previous = ticket.status
        if status == previous:
            return ticket
        closed = (Ticket.Status.RESOLVED, Ticket.Status.CLOSED)
        if previous in closed and status not in closed:
            _clock_reopen(ticket, at, actor=actor, why="reopened by an agent")
        ticket.status = status
        if status == Ticket.Status.WAITING_ON_CUSTOMER:
            _clock_pause(ticket, at, actor=actor, why="an agent set it waiting")
        else:
            _clock_resume(
                ticket, at, actor=actor, why=f"an agent set it {ticket.status}"
            )
        ticket.save()
        TicketEvent.objects.create(
            ticket=ticket,
            kind="status_changed",
            actor=actor,
            detail=f"{previous} -> {status}",
        )
    return ticket


def _clock_pause(ticket: Ticket, at: dt.datetime, *, actor, why: str) -> bool:
    """Stop the clock, keeping what is left on each due time; no save."""
    at = at.astimezone(dt.UTC)
    if ticket.clock_paused_at is not None:
        return False
    if ticket.priority not in sla.PAUSABLE:
        TicketEvent.objects.create(
            ticket=ticket,
            kind="clock_running",
            actor=actor,
            detail=f"{why}; the clock keeps running: a {ticket.priority} is "
            "updated whether or not the customer answers",
        )
        return False
    left = []
    ticket.acknowledge_remaining = None
    if ticket.acknowledged_at is None and ticket.acknowledge_due is not None:
        ticket.acknowledge_remaining = sla.remaining_on_clock(
            priority=ticket.priority,
            moment=at,
            due=ticket.acknowledge_due,
            business=ticket.business,
        )
        left.append(f"acknowledgement {_duration_text(ticket.acknowledge_remaining)}")
    ticket.next_update_remaining = None
    if ticket.next_update_due is not None:
        ticket.next_update_remaining = sla.remaining_on_clock(
            priority=ticket.priority,
            moment=at,
            due=ticket.next_update_due,
            business=ticket.business,
        )
        left.append(f"next update {_duration_text(ticket.next_update_remaining)}")
    ticket.clock_paused_at = at
    unit = "of open hours " if ticket.priority not in sla.WALL_CLOCK else ""
    TicketEvent.objects.create(
        ticket=ticket,
        kind="clock_paused",
        actor=actor,
        detail=f"SLA clock paused: {why}. Left {unit}on the clock: "
        + (", ".join(left) or "nothing due"),
    )
    logger.info("ticket clock paused id=%s", ticket.pk)
    return True


def _clock_resume(ticket: Ticket, at: dt.datetime, *, actor, why: str) -> bool:
    """Start a stopped clock with what was left on it; no save."""
    if ticket.clock_paused_at is None:
        return False
    # A replayed message can carry a date before the pause. In UTC: two
    # times of one zone subtract as wall-clock times.
    at = max(at.astimezone(dt.UTC), ticket.clock_paused_at.astimezone(dt.UTC))
    stopped = at - ticket.clock_paused_at.astimezone(dt.UTC)
    if ticket.acknowledge_remaining is not None and ticket.acknowledged_at is None:
        ticket.acknowledge_due = sla.due_after_resume(
            priority=ticket.priority,
            moment=at,
            remaining=ticket.acknowledge_remaining,
            business=ticket.business,
        )
    if ticket.next_update_remaining is not None:
        ticket.next_update_due = sla.due_after_resume(
            priority=ticket.priority,
            moment=at,
            remaining=ticket.next_update_remaining,
            business=ticket.business,
        )
    ticket.clock_paused_total += stopped
    ticket.clock_paused_at = None
    ticket.acknowledge_remaining = None
    ticket.next_update_remaining = None
    TicketEvent.objects.create(
        ticket=ticket,
        kind="clock_resumed",
        actor=actor,
        detail=f"SLA clock resumed: {why}, after {_duration_text(stopped)} "
        f"stopped. {_due_text(ticket)}",
    )
    logger.info(
        "ticket clock resumed id=%s stopped_s=%d", ticket.pk, stopped.total_seconds()
    )
    return True


def _clock_reopen(ticket: Ticket, at: dt.datetime, *, actor, why: str) -> None:
    """A closed ticket opened again owes an update within its period."""
    ticket.next_update_due = next_update_after(
        priority=ticket.priority, moment=at, business=ticket.business
    )
    TicketEvent.objects.create(
        ticket=ticket,
        kind="sla_recomputed",
        actor=actor,
        detail=f"{why} after {ticket.status}. {_due_text(ticket)}",
    )


def _priority_apply(
    ticket: Ticket, *, priority: str, at: dt.datetime, reason: str, actor
) -> bool:
    """Set the priority and recompute the due times; no save."""
    previous = ticket.priority
    if priority == previous:
        return False
    # Recomputed on a running clock; a stopped one stops again afterwards,
    # keeping what is left in the new priority's terms.
    paused = _clock_resume(ticket, at, actor=actor, why="priority change")
    due = due_times(priority=priority, received_at=at, business=ticket.business)
    raised = PRIORITY_RANK[Priority(priority)] < PRIORITY_RANK[Priority(previous)]
    if ticket.acknowledged_at is None:
        ticket.acknowledge_due = (
            min(ticket.acknowledge_due, due.acknowledge_by)
            if raised and ticket.acknowledge_due
            else due.acknowledge_by
        )
    ticket.next_update_due = (
        min(ticket.next_update_due, due.next_update_by)
        if raised and ticket.next_update_due
        else due.next_update_by
    )
    ticket.priority = priority
    TicketEvent.objects.create(
        ticket=ticket,
        kind="sla_recomputed",
        actor=actor,
        detail=f"{previous} -> {priority}: {reason}. {_due_text(ticket)}",
    )
    if paused and ticket.status == Ticket.Status.WAITING_ON_CUSTOMER:
        _clock_pause(ticket, at, actor=actor, why="still waiting on the customer")
    return True


def _due_text(ticket: Ticket) -> str:
    parts = []
    if ticket.acknowledged_at is None and ticket.acknowledge_due:
        parts.append(f"acknowledge by {_stamp(ticket, ticket.acknowledge_due)}")
    if ticket.next_update_due:
        parts.append(f"next update by {_stamp(ticket, ticket.next_update_due)}")
    return ("Now " + ", ".join(parts) + ".") if parts else "Nothing due."


def _stamp(ticket: Ticket, moment: dt.datetime) -> str:
    local = moment.astimezone(_display_zone(ticket))
    return f"{local:%a %b} {local.day} {local:%H:%M %Z}"


def _duration_text(amount: dt.timedelta) -> str:
    minutes = int(amount.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


# --- Agent replies -----------------------------------------------------------


def script_values(*, ticket: Ticket, next_update: str) -> dict[str, str]:
    """What a reply script's placeholders become for this ticket."""
    return {
        "next_update": next_update,
        "reference": ticket.reference,
        "workaround": scripts.DEFAULT_WORKAROUND,
        "business": ticket.business.name if ticket.business_id else "",
        "name": (ticket.requester_name or "").strip().strip('"'),
    }


def next_update_suggested(*, ticket: Ticket, now: dt.datetime | None = None):
    """The next-update time an agent's reply promises unless they change it.

    The priority's own period from now: what the SLA clock will hold the
    reply to.
    """
    return next_update_after(
        priority=ticket.priority,
        moment=now or timezone.now(),
        business=ticket.business,
    )


def ticket_display_zone(*, ticket: Ticket) -> ZoneInfo:
    """The zone we show this ticket's customer times in."""
    return _display_zone(ticket)


def next_update_display(*, ticket: Ticket, moment: dt.datetime | None) -> str:
    """A time as the customer reads it, with its day: their zone."""
    if moment is None:
        return "the next update"
    local = moment.astimezone(_display_zone(ticket))
    return f"{local:%I:%M %p %Z}".lstrip("0") + f" on {local:%A, %b} {local.day}"


def ticket_reply_render(
    *, ticket: Ticket, slug: str, next_update_at: dt.datetime
) -> str:
    """Script `slug` rendered for this ticket, for the agent to edit."""
    return scripts.script_text(
        slug=slug,
        values=script_values(
            ticket=ticket,
            next_update=next_update_display(ticket=ticket, moment=next_update_at),
        ),
    )


def ticket_reply_check(
    *,
    ticket: Ticket,
    body: str,
    next_update_at: dt.datetime | None,
    override_reason: str = "",
    now: dt.datetime | None = None,
) -> tuple[str, list[Finding]]:
    """The reply as it would go out, and its never-say findings.

    Raises `ReplyInvalid` for a reply that cannot be sent (empty, no
    next-update time, one in the past or past the priority's period) and
    `ReplyBlocked` for findings without an override reason. The text gets
    a "Next update by ..." line when it does not name the time itself.
    """
    now = now or timezone.now()
    body = (body or "").strip()
    if not body:
        raise ReplyInvalid("the reply is empty")
    if next_update_at is None:
        raise ReplyInvalid("every customer update carries a next-update time")
    if timezone.is_naive(next_update_at):
        raise ReplyInvalid("the next-update time needs a time zone")
    if next_update_at <= now:
        raise ReplyInvalid("the next-update time has already passed")
    latest = next_update_suggested(ticket=ticket, now=now)
    if next_update_at > latest:
        raise ReplyInvalid(
            f"a {ticket.priority} is updated by "
            f"{next_update_display(ticket=ticket, moment=latest)} at the latest"
        )
    when = next_update_display(ticket=ticket, moment=next_update_at)
    if when not in body:
        body = f"{body}\n\n" + scripts.NEXT_UPDATE_LINE.format(next_update=when)
    findings = check_outgoing(body)
    if findings and not (override_reason or "").strip():
        raise ReplyBlocked(findings)
    return body, findings


def ticket_reply_send(
    *,
    ticket: Ticket,
    author,
    body: str,
    next_update_at: dt.datetime | None,
    override_reason: str = "",
    now: dt.datetime | None = None,
) -> TicketMessage:
    """Send an agent's reply to the customer, threaded on the ticket.

    Every reply carries a next-update time (in the future, no later than
    the priority's period) and passes the never-say check; findings raise
    `ReplyBlocked` unless `override_reason` says why to send it anyway,
    which is logged. The outbound TicketMessage, the outbox email and the
    clock (acknowledged, next update due, clock running again) are written
    in one transaction; the email goes out after commit. Locks the ticket.
    Raises `ReplyInvalid` for a reply that cannot be sent at all.
    """
    now = now or timezone.now()
    override_reason = (override_reason or "").strip()
    body, findings = ticket_reply_check(
        ticket=ticket,
        body=body,
        next_update_at=next_update_at,
        override_reason=override_reason,
        now=now,
    )

    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        recipient = ticket.requester_email
        if not recipient:
            raise ReplyInvalid("the ticket has no address to reply to")
        message = _reply_message(ticket, author, body, now)
        notification, _ = notification_enqueue(
            channel=Notification.Channel.EMAIL,
            reason=Notification.Reason.TICKET_REPLY,
            recipient=recipient,
            subject=message.subject,
            body=message.body,
            headers={
                name: value
                for name, value in {
                    "Message-ID": message.message_id,
                    "In-Reply-To": message.in_reply_to,
                    "References": message.references,
                }.items()
                if value
            },
            dedupe_key=f"ticket_reply:{message.pk}:email:{recipient.lower()}",
            ticket=ticket,
        )
        _clock_resume(ticket, now, actor=author, why="an agent replied")
        ticket.acknowledged_at = ticket.acknowledged_at or now
        ticket.next_update_due = next_update_at
        if ticket.status in (Ticket.Status.NEW, Ticket.Status.WAITING_ON_CUSTOMER):
            ticket.status = Ticket.Status.OPEN
        ticket.save()
        TicketEvent.objects.create(
            ticket=ticket,
            kind="reply_sent",
            actor=author,
            detail=f"message {message.pk}, notification {notification.pk}; "
            f"next update promised by {_stamp(ticket, next_update_at)}",
        )
        if findings:
            words = "; ".join(f'"{f.words}" ({f.why})' for f in findings)
            TicketEvent.objects.create(
                ticket=ticket,
                kind="guardrail_override",
                actor=author,
                detail=f"sent despite the never-say check: {words}. "
                f"Reason given: {override_reason}",
            )
            logger.warning(
                "reply sent despite never-say findings ticket=%s message=%s "
                "author=%s findings=%d reason=%r",
                ticket.pk,
                message.pk,
                getattr(author, "pk", None),
                len(findings),
                override_reason,
            )
    logger.info(
        "ticket reply queued id=%s message=%s notification=%s",
        ticket.pk,
        message.pk,
        notification.pk,
    )
    return message


def _reply_message(ticket: Ticket, author, body: str, now) -> TicketMessage:
    """The outbound message, threaded under the customer's latest one."""
    latest = (
        ticket.messages.filter(direction=TicketMessage.Direction.INBOUND)
        .exclude(message_id=None)
        .order_by("-created_at", "-id")
        .first()
    )
    chain = []
    if latest is not None:
        chain = [*latest.references.split(), latest.message_id]
    subject = _strip_tags(ticket.subject) or "Your support request"
    subject = Truncator(subject).chars(200)  # keeps the tag (first reply)
    if not re.match(r"(?i)^re:", subject):
        subject = f"Re: {subject}"
    domain = settings.SUPPORT_EMAIL.rpartition("@")[2] or "afterhours.example"
    return TicketMessage.objects.create(
        ticket=ticket,
        direction=TicketMessage.Direction.OUTBOUND,
        message_id=make_msgid(idstring=ticket.reference.lower(), domain=domain),
        in_reply_to=latest.message_id if latest else "",
        references=" ".join(dict.fromkeys(chain))[:10000],
        from_address=settings.SUPPORT_EMAIL,
        to_address=ticket.requester_email,
        subject=f"{subject} [{ticket.reference}]"[:998],
        body=body + "\n",
        author=author,
        created_at=now,
    )


# --- Internals ---------------------------------------------------------------


def _business_and_facts(
    *,
    parsed: ParsedEmail,
    text: str,
    received_at: dt.datetime,
    business: Business | None,
):
    """Match the business (unless known) and read the facts in its zone."""
    subject = parsed.subject
    if business is None:
        first_pass = extract_facts(
            subject=subject,
            body=text,
            received_at=received_at,
            zone=None,
        )
        business = business_for_sender(
            from_address=parsed.from_address,
            text=f"{subject}\n{text}",
            numbers=list(first_pass.phones),
        )
        if business is None:
            return None, first_pass
    facts = extract_facts(
        subject=subject,
        body=text,
        received_at=received_at,
        zone=business.zone,
        business_lines=tuple(business.phone_lines.values_list("number", flat=True)),
    )
    return business, facts


def _triage(*, ticket: Ticket, facts, text: str, received_at: dt.datetime):
    result = triage(
        subject=ticket.subject,
        body=text,
        facts=facts,
        business=ticket.business,
        received_at=received_at,
    )
    if result.component:
        # The count includes this ticket, so it carries its component first.
        if not ticket.component:
            ticket.component = result.component
            ticket.save(update_fields=["component", "updated_at"])
        matching = matching_report_count(
            component=result.component,
            since=received_at - MATCHING_REPORTS_WINDOW,
            until=received_at,
        )
        if matching:
            result = triage(
                subject=ticket.subject,
                body=text,
                facts=facts,
                business=ticket.business,
                received_at=received_at,
                matching_reports=matching,
            )
    return result


def _triage_detail(ticket: Ticket, result) -> str:
    reasons = "; ".join(result.reasons) or "no rule matched"
    escalations = ", ".join(ticket.escalations) or "none"
    return f"{ticket.priority}: {reasons}. Escalations: {escalations}"


def _set_facts(ticket: Ticket, facts) -> None:
    for name, value in facts.ticket_fields().items():
        setattr(ticket, name, value)


def _inbound_message(
    ticket: Ticket,
    parsed: ParsedEmail,
    inbound_email: InboundEmail,
    received_at: dt.datetime,
) -> TicketMessage:
    message = _message_from_email(
        ticket,
        parsed,
        inbound_email,
        direction=TicketMessage.Direction.INBOUND,
        body=parsed.text,
        created_at=received_at,
    )
    for attachment in parsed.attachments:
        TicketAttachment.objects.create(
            message=message,
            filename=attachment.filename[:255],
            content_type=attachment.content_type[:255],
            size=len(attachment.content),
            file=ContentFile(attachment.content, name=attachment.filename[:100]),
        )
    return message


def _message_from_email(
    ticket: Ticket,
    parsed: ParsedEmail,
    inbound_email: InboundEmail,
    *,
    direction: str,
    body: str,
    created_at: dt.datetime,
) -> TicketMessage:
    """A ticket message from an inbound email, its headers cut to fit."""
    return TicketMessage.objects.create(
        ticket=ticket,
        direction=direction,
        message_id=_unused_message_id(parsed.message_id),
        in_reply_to=parsed.in_reply_to,
        references=" ".join(parsed.references),
        from_address=parsed.from_address,
        to_address=", ".join(parsed.to)[:320],
        subject=parsed.subject[:998],
        body=body,
        inbound_email=inbound_email,
        created_at=created_at,
    )


def _unused_message_id(message_id: str) -> str | None:
    # The id is unique across tickets; a sender reusing one (it happens)
    # must not stop us from recording the message.
    if not message_id or TicketMessage.objects.filter(message_id=message_id).exists():
        return None
    return message_id


def _strip_tags(subject: str) -> str:
    prefix = re.escape(settings.TICKET_REFERENCE_PREFIX)
    return re.sub(rf"\s*\[{prefix}-\d+\]", "", subject).strip()


def _display_zone(ticket: Ticket) -> ZoneInfo:
    if ticket.business_id is not None:
        return ticket.business.zone
    first = ticket.messages.filter(direction=TicketMessage.Direction.INBOUND).first()
    text = f"{ticket.subject}\n{first.body if first else ''}"
    return _zone_from_text(text) or ZoneInfo(DEFAULT_ZONE)


def _zone_from_text(text: str) -> ZoneInfo | None:
    for pattern, name in ZONE_WORDS.items():
        if re.search(pattern, text, re.IGNORECASE):
            return ZoneInfo(name)
    return None


def _render_time(
    moment: dt.datetime | None, zone: ZoneInfo, reference: dt.datetime
) -> str:
    """'11:22 PM EST', with the day added when it is not the same day."""
    if moment is None:
        return "the next update"
    local = moment.astimezone(zone)
    text = f"{local:%I:%M %p %Z}".lstrip("0")
    if local.date() != reference.astimezone(zone).date():
        text += f" on {local:%A, %b} {local.day}"
    return text


def _fact_question(ticket: Ticket, fact: str, zone: ZoneInfo) -> str:
    if fact == "started_at" and ticket.started_at_text:
        return _start_time_question(ticket, zone)
    return scripts.MISSING_FACT_QUESTIONS[fact]


def _start_time_question(ticket: Ticket, zone: ZoneInfo) -> str:
    """Ask about the start time the customer gave but we could not read.

    A wall-clock time that happened twice or not at all in their zone is
    named as such, so they can tell us which one they meant.
    """
    text = ticket.started_at_text.strip()
    zone = _zone_from_text(text) or zone
    local_received = ticket.received_at.astimezone(zone).replace(tzinfo=None)
    try:
        # Limitation: dateutil reads the usual US forms ("1:30 AM, Nov 1");
        # any other form gets the general question, which is still right.
        # The zone word was read above; dateutil would only warn about it.
        naive = date_parser.parse(
            text,
            fuzzy=True,
            ignoretz=True,
            default=local_received.replace(second=0, microsecond=0),
        )
    except (ValueError, OverflowError, TypeError):
        return scripts.STARTED_AT_UNREADABLE.format(text=text)
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    local = f"{naive:%I:%M %p}".lstrip("0")
    if first.utcoffset() != second.utcoffset():
        round_trip = first.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None)
        if round_trip != naive:
            return scripts.STARTED_AT_SKIPPED.format(text=text, local=local)
        return scripts.STARTED_AT_REPEATED.format(
            text=text, local=local, first=first.tzname(), second=second.tzname()
        )
    return scripts.STARTED_AT_UNREADABLE.format(text=text)
