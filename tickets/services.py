"""Writes on tickets: open from email, add a reply, first reply, P0 page.

Every function here runs inside the caller's transaction (the inbound email
processing) and only writes rows: outgoing mail and SMS are outbox rows
(`notification_enqueue`), sent after commit. A ticket's history is written
as TicketEvent rows as it happens.
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
from django.utils import timezone

from accounts.models import Business, Contact, OnCallContact
from afterhours.privacy import mask_email, mask_phone
from intake.email import ParsedEmail
from intake.models import InboundEmail
from notifications.models import Notification
from notifications.services import notification_enqueue

from . import scripts
from .models import (
    REQUIRED_FACTS,
    Priority,
    Ticket,
    TicketAttachment,
    TicketEvent,
    TicketMessage,
)
from .selectors import business_for_sender, matching_report_count
from .sla import DEFAULT_ZONE, due_times
from .triage import extract_facts, merge_facts, triage

logger = logging.getLogger(__name__)

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
        ticket.priority = result.priority
        ticket.priority_reasons = list(result.reasons)
        # The sooner promise of the higher priority counts from the reply.
        due = due_times(
            priority=ticket.priority, received_at=received_at, business=ticket.business
        )
        if ticket.acknowledged_at is None:
            ticket.acknowledge_due = min(
                filter(None, [ticket.acknowledge_due, due.acknowledge_by])
            )
        ticket.next_update_due = min(
            filter(None, [ticket.next_update_due, due.next_update_by])
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
    if ticket.status in (Ticket.Status.WAITING_ON_CUSTOMER, Ticket.Status.RESOLVED):
        ticket.status = Ticket.Status.OPEN
    ticket.save()
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
    message = TicketMessage.objects.create(
        ticket=ticket,
        direction=TicketMessage.Direction.NOTE,
        message_id=_unused_message_id(parsed.message_id),
        in_reply_to=parsed.in_reply_to,
        references=" ".join(parsed.references),
        from_address=parsed.from_address,
        to_address=", ".join(parsed.to)[:320],
        subject=parsed.subject[:998],
        body=f"Automatic mail ({why}):\n\n{parsed.text}",
        inbound_email=inbound_email,
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
        scripts.ACKNOWLEDGEMENT[ticket.priority].format(time=next_update),
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
    ticket.save(
        update_fields=[
            "first_reply_sent_at",
            "acknowledged_at",
            "status",
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
    if ticket.business_id is not None:
        first = (
            OnCallContact.objects.filter(business_id=ticket.business_id)
            .exclude(phone="")
            .order_by("order", "id")
            .first()
        )
        if first is not None:
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
            component=result.component, since=received_at - MATCHING_REPORTS_WINDOW
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
    message = TicketMessage.objects.create(
        ticket=ticket,
        direction=TicketMessage.Direction.INBOUND,
        message_id=_unused_message_id(parsed.message_id),
        in_reply_to=parsed.in_reply_to,
        references=" ".join(parsed.references),
        from_address=parsed.from_address,
        to_address=", ".join(parsed.to)[:320],
        subject=parsed.subject[:998],
        body=parsed.text,
        inbound_email=inbound_email,
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
        naive = date_parser.parse(
            text, fuzzy=True, default=local_received.replace(second=0, microsecond=0)
        ).replace(tzinfo=None)
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
