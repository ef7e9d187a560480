"""The email fallback of an SMS that did not reach its person.

An SMS that is refused, written off, suppressed, or not confirmed delivered
within SMS_DELIVERY_CONFIRM_SECONDS goes out once more as an email to the
same person: their on-call contact email, or the next on-call contact's if
they have none (or it bounced). One fallback per SMS: the email row points
at the SMS (`fallback_of`, one-to-one) and is keyed `fallback:<sms id>`.
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
        from intake.calls import call_summary_text

        # Written now, not copied from the SMS: a summary that arrived after
        # the SMS went out is in it.
        text = call_summary_text(call=call)
        caller = call.caller_number or "an unknown number"
        subject = f"Call summary: {call.business.name}, call from {caller}"
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
