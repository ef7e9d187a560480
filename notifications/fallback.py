"""The email fallback of an SMS that did not reach its person.

An SMS that is refused, written off, suppressed, or not confirmed delivered
within SMS_DELIVERY_CONFIRM_SECONDS goes out once more as an email to the
same person: their on-call contact email, or the next on-call contact's if
they have none (or it bounced). One fallback per SMS: the email row points
at the SMS (`fallback_of`, one-to-one) and is keyed `fallback:<sms id>`.

Once the email is owed it replaces the SMS, so the person hears once:

- an SMS that has not reached Twilio is not sent any more: the claim writes
  it off as undeliverable, code "superseded" (notifications.delivery); one
  whose earlier attempt may have reached Twilio unseen is looked up there
  first and, if found, kept as sent, never sent again;
- an "undelivered" report does not schedule a re-send: the SMS is written
  off (notifications.delivery_reports).

The other way round, an SMS confirmed delivered before its email has gone
out cancels the email (state "cancelled"), when the report lands and again
when the email is claimed. The person already has the text, and the email
would tell them it "was not confirmed delivered", which is no longer true; a
support lead prefers one message with the facts right. Cancelling risks no
miss: "delivered" is the carrier's confirmation. An email already being sent
or sent is left alone: a second copy is noise, not harm.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import OnCallContact
from afterhours.privacy import mask_phone

from .models import Notification, Suppression
from .providers.twilio_sms import sms_address, sms_status_callback_url
from .services import notification_enqueue

logger = logging.getLogger(__name__)

State = Notification.State
Channel = Notification.Channel

# States in which an SMS may still be on its way, or was never confirmed.
UNCONFIRMED = (
    State.PENDING,
    State.SENDING,
    State.SENT,
    State.FAILED,
    State.UNDELIVERABLE,
    State.SUPPRESSED,
)
# The sweep looks back this far; older rows were decided long ago.
SWEEP_LOOKBACK = timedelta(days=1)
# last_error_code of an SMS not sent because its email fallback was owed.
SUPERSEDED = "superseded"
# last_error_code of an email fallback cancelled because its SMS arrived.
SMS_DELIVERED = "sms_delivered"
# Email fallbacks nobody is sending: not yet claimed, or waiting for a retry.
CANCELLABLE = (State.PENDING, State.FAILED)


def notification_fallback_owe(
    *, notification: Notification, why: str
) -> Notification | None:
    """Owe the email that replaces an SMS, once; None when nobody can get it.

    Call inside a transaction that holds the SMS row's lock. `why` finishes
    the sentence "We sent this by text message ..., but it ..." in the email.
    Idempotent: a second call returns the fallback already owed. When no
    address is found the SMS is marked checked so sweeps stop asking, and
    the miss is logged as an error.
    """
    if notification.channel != Channel.SMS:
        return None
    existing = Notification.objects.filter(fallback_of=notification).first()
    if existing is not None:
        return existing
    if notification.fallback_checked_at is not None:
        return None

    now = timezone.now()
    Notification.objects.filter(pk=notification.pk).update(fallback_checked_at=now)
    notification.fallback_checked_at = now
    addresses = fallback_addresses(notification=notification)
    if not addresses:
        logger.error(
            "fallback: notification id=%s to=%s %s and has no email to fall back "
            "to (no on-call contact email, none unsuppressed)",
            notification.pk,
            mask_phone(notification.recipient),
            why,
        )
        return None

    subject, body = _fallback_text(notification, why=why)
    fallback, _ = notification_enqueue(
        channel=Channel.EMAIL,
        reason=notification.reason,
        recipient=addresses[0],
        subject=subject,
        body=body,
        headers={"Auto-Submitted": "auto-generated"},
        dedupe_key=f"fallback:{notification.pk}",
        call=notification.call,
        ticket=notification.ticket,
        incident=notification.incident,
        fallback_of=notification,
    )
    logger.warning(
        "fallback: notification id=%s %s; email notification id=%s owed",
        notification.pk,
        why,
        fallback.pk,
    )
    return fallback


def sms_fallback_owed(*, notification: Notification) -> Notification | None:
    """The email already owed in place of this SMS, if any.

    No query for an SMS whose fallback was never looked at (every SMS on its
    first send): `notification_fallback_owe` marks the SMS before it owes
    the email. An SMS marked with nobody to write to has no fallback and is
    still sent.
    """
    if notification.channel != Channel.SMS or notification.fallback_checked_at is None:
        return None
    return Notification.objects.filter(fallback_of=notification).first()


def fallback_sms_delivered(*, email: Notification) -> Notification | None:
    """The SMS this email replaces, if it was confirmed delivered after all."""
    if email.channel != Channel.EMAIL or email.fallback_of_id is None:
        return None
    return Notification.objects.filter(
        pk=email.fallback_of_id, state=State.DELIVERED
    ).first()


def fallback_cancel(
    *, email: Notification, sms: Notification, locked: bool = False
) -> bool:
    """Cancel an email fallback that has not gone out; its SMS was delivered.

    Call inside the transaction that saw the SMS delivered. Without
    `locked` (the caller holds no lock on the email), only an email nobody
    is sending is cancelled: the update is conditional on its state, so a
    worker's claim and this update cannot both win. False when it was not
    cancelled.
    """
    fields = {
        "state": State.CANCELLED,
        "last_error": (
            f"not sent: SMS #{sms.pk} was delivered before this email fallback went out"
        ),
        "last_error_code": SMS_DELIVERED,
        "next_attempt_at": None,
    }
    rows = Notification.objects.filter(pk=email.pk)
    if not locked:
        rows = rows.filter(state__in=CANCELLABLE)
    if not rows.update(**fields):
        return False
    for name, value in fields.items():
        setattr(email, name, value)
    logger.info(
        "fallback: email notification id=%s cancelled: SMS notification id=%s "
        "was delivered first",
        email.pk,
        sms.pk,
    )
    return True


def fallback_addresses(*, notification: Notification) -> list[str]:
    """Where the email fallback of an SMS may go, best first.

    The on-call contact the SMS went to, then the other on-call contacts of
    that business in their order (the call's business when the SMS is about
    a call); SUPPORT_ONCALL_EMAIL for the support on-call phone. Addresses
    suppressed by a bounce are left out.
    """
    phone = sms_address(notification.recipient)
    contacts = OnCallContact.objects.order_by("order", "id")
    business_id = notification.call.business_id if notification.call_id else None
    if business_id is None:
        # Limitation: a contact is matched on the phone as stored; a number
        # typed with another spelling in admin is not found here.
        match = contacts.filter(phone__in={phone, notification.recipient}).first()
        business_id = match.business_id if match else None
    people = list(contacts.filter(business_id=business_id)) if business_id else []
    start = next(
        (i for i, person in enumerate(people) if sms_address(person.phone) == phone),
        0,
    )
    emails = [person.email for person in people[start:] + people[:start]]
    support_phone = settings.SUPPORT_ONCALL_PHONE
    if support_phone and sms_address(support_phone) == phone:
        emails.append(settings.SUPPORT_ONCALL_EMAIL)

    emails = list(dict.fromkeys(e.strip() for e in emails if e and e.strip()))
    if not emails:
        return []
    any_of = Q()
    for email in emails:
        any_of |= Q(address__iexact=email)
    suppressed = {
        address.lower()
        for address in Suppression.objects.filter(
            any_of, channel=Channel.EMAIL, sender=""
        ).values_list("address", flat=True)
    }
    return [e for e in emails if e.lower() not in suppressed]


def sms_fallback_due_ids(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """SMS rows past the delivery deadline with no fallback decided yet.

    Not delivered within SMS_DELIVERY_CONFIRM_SECONDS of being owed,
    whatever they are doing (sent and unconfirmed, failing and retrying,
    stuck). Rows still held are not owed yet. Without a status callback URL
    Twilio cannot confirm anything, so sent rows are left alone.
    """
    now = now or timezone.now()
    deadline = now - timedelta(seconds=settings.SMS_DELIVERY_CONFIRM_SECONDS)
    rows = Notification.objects.filter(
        channel=Channel.SMS,
        state__in=UNCONFIRMED,
        fallback__isnull=True,
        fallback_checked_at__isnull=True,
        created_at__lte=deadline,
        created_at__gte=now - SWEEP_LOOKBACK,
    ).exclude(Q(state=State.PENDING, next_attempt_at__gt=now))
    if not sms_status_callback_url():
        # Limitation: with no PUBLIC_BASE_URL no delivery report can reach
        # us, so a sent SMS is taken as delivered; only failures fall back.
        rows = rows.exclude(state=State.SENT)
    return list(rows.order_by("created_at").values_list("pk", flat=True)[:limit])


def sms_fallback_unconfirmed(
    *, notification_id: int, now: datetime | None = None
) -> Notification | None:
    """Owe the fallback of one SMS found past its delivery deadline.

    Takes the SMS row's lock (select_for_update) and checks again: a
    delivery report may have landed since the sweep looked.
    """
    now = now or timezone.now()
    seconds = settings.SMS_DELIVERY_CONFIRM_SECONDS
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update()
            .filter(pk=notification_id, channel=Channel.SMS, state__in=UNCONFIRMED)
            .first()
        )
        if notification is None:
            return None
        if notification.created_at > now - timedelta(seconds=seconds):
            return None
        minutes = round(seconds / 60) or 1
        why = (
            f"was not confirmed delivered within {minutes} minute"
            f"{'s' if minutes != 1 else ''}"
        )
        return notification_fallback_owe(notification=notification, why=why)


def sms_fallback_sweep(*, now: datetime | None = None) -> int:
    """Owe the fallback of every SMS past its deadline; returns how many."""
    owed = 0
    for notification_id in sms_fallback_due_ids(now=now):
        if sms_fallback_unconfirmed(notification_id=notification_id, now=now):
            owed += 1
    if owed:
        logger.warning("fallback: sweep owed %d email fallback(s)", owed)
    return owed


def _fallback_text(notification: Notification, *, why: str) -> tuple[str, str]:
    """Subject and body that make sense to someone who never got the SMS."""
    call = notification.call
    if (
        notification.reason == Notification.Reason.CALL_SUMMARY
        and call is not None
        and call.business_id is not None
    ):
        from intake.calls import call_summary_subject, call_summary_text

        # Written now, not copied from the SMS: a summary that arrived after
        # the SMS went out is in it.
        text = call_summary_text(call=call)
        subject = call_summary_subject(call=call)
    else:
        text = notification.body
        label = notification.get_reason_display()
        subject = f"{label[:1].upper()}{label[1:]} (by email: the text did not arrive)"
    ending = notification.recipient[-4:]
    note = (
        f"We sent this by text message to the phone ending in {ending}, "
        f"but it {why}. Here it is by email."
    )
    return subject, f"{text}\n\n--\n{note}\n"
