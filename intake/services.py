"""Inbound support email: store it raw first, then turn it into a ticket.

The webhook, the `ingest_email` command and the tests all go through these
two services. Storing is idempotent on Message-ID, so an ESP's retry of the
same delivery finds the row and changes nothing; processing is idempotent
on the row's status, under a row lock.
"""

import datetime as dt
import hashlib
import logging
import re
from dataclasses import asdict, dataclass, field

from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from afterhours.privacy import mask_email, mask_text
from notifications.models import Suppression

from .email import ParsedEmail, parse_email
from .models import InboundEmail

logger = logging.getLogger(__name__)

# Errors that a later attempt can outlive; the task retries these and
# processing records nothing for them.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


@dataclass
class IngestResult:
    """What became of one inbound email, as `ingest_email --json` prints it."""

    ticket: str | None = None
    business: str | None = None
    priority: str | None = None
    escalations: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    thread: str = "none"
    first_reply_sent: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def inbound_email_store(
    *, raw: bytes, esp: str, received_at: dt.datetime | None = None
) -> tuple[InboundEmail, bool]:
    """Keep a message exactly as it arrived, once per Message-ID.

    A message without a Message-ID gets one derived from a hash of its
    bytes, so the same bytes posted twice are still one row. A message that
    cannot be read safely is stored as rejected with its reason, for an
    agent. Returns (row, created).
    """
    # Limitation: a different message reusing a Message-ID (a broken mailer)
    # is taken for a retry of the first and not stored; RFC 5322 makes the
    # id unique, and ESP retries depend on that.
    parsed = parse_email(raw)
    status = InboundEmail.Status.PENDING
    if parsed.malformed:
        status = InboundEmail.Status.REJECTED
    inbound_email, created = InboundEmail.objects.get_or_create(
        message_id=parsed.message_id,
        defaults={
            "esp": esp[:40],
            "raw": raw,
            "from_address": parsed.from_address[:320],
            "subject": parsed.subject[:998],
            "received_at": received_at or timezone.now(),
            "status": status,
            "reason": parsed.malformed,
        },
    )
    logger.info(
        "inbound email %s id=%s esp=%s from=%s status=%s",
        "stored" if created else "already stored",
        inbound_email.pk,
        esp,
        mask_email(parsed.from_address),
        inbound_email.status,
    )
    return inbound_email, created


def inbound_email_store_unreadable(
    *,
    body: bytes,
    esp: str,
    reason: str,
    message_id: str = "",
    from_address: str = "",
    subject: str = "",
) -> tuple[InboundEmail, bool]:
    """Keep a delivery the ESP posted but that is no readable message.

    The request body itself is stored, rejected with the reason, so an
    agent sees it and the ESP gets its 200 instead of retrying forever.
    Without a Message-ID the row is keyed on a hash of the body. The
    sender and subject, when the caller could read them, fill the inbox's
    columns; every text is cleaned of what PostgreSQL text cannot hold.
    """
    message_id = _clean_text(message_id).strip()
    if not message_id:
        # Limitation: keyed on the whole body, so a retry that the ESP posts
        # with a new form boundary is stored a second time (both rejected).
        digest = hashlib.sha256(body).hexdigest()[:40]
        message_id = f"<{digest}@no-message-id.invalid>"
    reason = _clean_text(reason)[:2000]
    inbound_email, created = InboundEmail.objects.get_or_create(
        message_id=message_id[:998],
        defaults={
            "esp": esp[:40],
            "raw": body,
            "from_address": _clean_text(from_address)[:320],
            "subject": re.sub(r"\s+", " ", _clean_text(subject)).strip()[:998],
            "received_at": timezone.now(),
            "status": InboundEmail.Status.REJECTED,
            "reason": reason,
        },
    )
    logger.warning(
        "inbound email rejected id=%s esp=%s created=%s reason=%s",
        inbound_email.pk,
        esp,
        created,
        # A parser's message may quote an address or a number from the post.
        mask_text(reason),
    )
    return inbound_email, created


def _clean_text(text: str) -> str:
    # NUL cannot be stored in PostgreSQL text; lone surrogates (from bytes
    # decoded with surrogateescape) cannot be encoded for it.
    text = str(text).replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8")


def inbound_email_process(*, inbound_email_id: int) -> IngestResult:
    """Turn a stored email into a ticket, a reply, a note, or nothing.

    Locks the InboundEmail row; a row already processed (or ignored, or
    rejected) returns its result again and changes nothing. A message
    that fails for a reason other than a transient database error is set
    aside as rejected with the reason, for an agent.
    """
    try:
        return _process(inbound_email_id)
    except TRANSIENT_ERRORS:
        raise
    except (DatabaseError, ValueError, TypeError, LookupError, AttributeError) as exc:
        # Permanent: retrying the same bytes fails the same way. Recorded,
        # not retried, and visible in the inbox for an agent.
        logger.exception("inbound email id=%s could not be processed", inbound_email_id)
        InboundEmail.objects.filter(
            pk=inbound_email_id, status=InboundEmail.Status.PENDING
        ).update(
            status=InboundEmail.Status.REJECTED,
            reason=f"processing failed: {type(exc).__name__}: {exc}"[:2000],
            processed_at=timezone.now(),
        )
        return IngestResult()


def _process(inbound_email_id: int) -> IngestResult:
    from tickets.services import (
        ticket_add_automatic_note,
        ticket_add_reply,
        ticket_find_for_email,
        ticket_open_from_email,
    )

    with transaction.atomic():
        inbound_email = (
            InboundEmail.objects.select_for_update().filter(pk=inbound_email_id).first()
        )
        if inbound_email is None:
            return IngestResult()
        parsed = parse_email(bytes(inbound_email.raw))
        if inbound_email.status != InboundEmail.Status.PENDING:
            return _result(inbound_email)

        if parsed.malformed:
            _finish(inbound_email, InboundEmail.Status.REJECTED, parsed.malformed)
            return IngestResult()

        received_at = inbound_email.received_at
        ticket = ticket_find_for_email(parsed=parsed)
        if parsed.is_automatic:
            _suppress_bounced(parsed, inbound_email)
            if ticket is not None:
                ticket_add_automatic_note(
                    ticket=ticket,
                    parsed=parsed,
                    inbound_email=inbound_email,
                    why=parsed.automatic_why,
                )
            _finish(
                inbound_email,
                InboundEmail.Status.IGNORED,
                f"automatic mail: {parsed.automatic_why}",
                ticket,
            )
            logger.info(
                "inbound email id=%s automatic (%s) ticket=%s",
                inbound_email.pk,
                parsed.automatic_why,
                ticket.pk if ticket else None,
            )
            return _result(inbound_email)

        if ticket is not None:
            ticket = ticket_add_reply(
                ticket=ticket,
                parsed=parsed,
                inbound_email=inbound_email,
                received_at=received_at,
            )
        else:
            ticket = ticket_open_from_email(
                parsed=parsed, inbound_email=inbound_email, received_at=received_at
            )
        _finish(inbound_email, InboundEmail.Status.PROCESSED, "", ticket)
        return _result(inbound_email)


def _finish(inbound_email: InboundEmail, status: str, reason: str, ticket=None):
    inbound_email.status = status
    inbound_email.reason = reason
    inbound_email.ticket = ticket
    inbound_email.processed_at = timezone.now()
    inbound_email.save(update_fields=["status", "reason", "ticket", "processed_at"])


def _suppress_bounced(parsed: ParsedEmail, inbound_email: InboundEmail) -> None:
    """A delivery report's failed addresses: the outbox stops using them."""
    for address in parsed.bounced_addresses:
        _, created = Suppression.objects.get_or_create(
            channel="email",
            address=address,
            sender="",
            defaults={"reason": f"bounced (inbound email {inbound_email.pk})"},
        )
        logger.info(
            "email suppressed address=%s inbound_email=%s created=%s",
            mask_email(address),
            inbound_email.pk,
            created,
        )


def _result(inbound_email: InboundEmail) -> IngestResult:
    ticket = inbound_email.ticket
    if ticket is None:
        return IngestResult()
    from tickets.models import TicketMessage

    # By row id, not date: a replayed message may carry any Date.
    first_inbound = (
        ticket.messages.filter(direction=TicketMessage.Direction.INBOUND)
        .order_by("id")
        .first()
    )
    is_new = first_inbound is not None and first_inbound.inbound_email_id == (
        inbound_email.pk
    )
    return IngestResult(
        ticket=ticket.reference,
        business=ticket.business.name if ticket.business_id else None,
        priority=ticket.priority,
        escalations=sorted(ticket.escalations),
        missing=ticket.missing_facts,
        thread="new" if is_new else "reply",
        # Only a new ticket's opening message is ever answered by a first
        # reply; replies and notes never get one.
        first_reply_sent=is_new and ticket.first_reply_sent_at is not None,
    )
