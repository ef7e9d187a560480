"""Reads for tickets: which business wrote, how many reports match."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable
from email.utils import parseaddr

from accounts.models import Business, Contact, OnCallContact, PhoneLine

from .models import Ticket
from .triage import parse_phone, phone_numbers_in

# Shared mail providers: a sender's domain there says nothing about which
# business they work for.
FREE_MAIL_DOMAINS = frozenset(
    {
        "aol.com",
        "gmail.com",
        "googlemail.com",
        "hotmail.com",
        "icloud.com",
        "live.com",
        "mac.com",
        "me.com",
        "msn.com",
        "outlook.com",
        "proton.me",
        "protonmail.com",
        "yahoo.com",
        "ymail.com",
        "comcast.net",
        "att.net",
        "verizon.net",
        "sbcglobal.net",
        "gmx.com",
        "mail.com",
        "zoho.com",
        "fastmail.com",
    }
)
# Trailing words a customer often leaves out of their own business's name.
_NAME_SUFFIXES = frozenset(
    {
        "group",
        "inc",
        "llc",
        "ltd",
        "co",
        "company",
        "corp",
        "services",
        "service",
        "pllc",
    }
)
_NON_WORD_RE = re.compile(r"[^0-9a-z]+")


def business_for_sender(
    *, from_address: str, text: str, numbers: Iterable
) -> Business | None:
    """The business a support message comes from, or None to leave to an agent.

    In order: a Contact with exactly that address; an on-call contact with
    it; the one business whose contacts share the sender's domain (shared
    mail providers excluded); a phone line among ``numbers`` (E.164 strings
    or ``PhoneMention``s); the business's name written in ``text``; a phone
    line anywhere in ``text``, its signature included ("Marcus, Harbor
    Plumbing (617) 555-0142"). A step that points at two businesses decides
    nothing, but narrows the later steps to those two; no step ever guesses
    between them.
    """
    address = (parseaddr(from_address or "")[1] or "").strip().lower()
    domain = address.rpartition("@")[2] if "@" in address else ""
    narrowed: set[int] | None = None

    steps = [
        lambda: (
            _ids(Contact.objects.filter(email__iexact=address)) if address else set()
        ),
        lambda: (
            _ids(OnCallContact.objects.filter(email__iexact=address))
            if address
            else set()
        ),
        lambda: _domain_ids(domain),
        lambda: _line_ids(numbers),
        lambda: _name_ids(text),
        lambda: _line_ids(
            phone_numbers_in(text[:20_000]) if isinstance(text, str) else ()
        ),
    ]
    for step in steps:
        found = step()
        if narrowed is not None and found:
            found &= narrowed
        if len(found) == 1:
            return Business.objects.filter(pk=found.pop()).first()
        if len(found) > 1:
            narrowed = found
    return None


def matching_report_count(
    *, component: str, since: dt.datetime, until: dt.datetime
) -> int:
    """Tickets received from ``since`` to ``until`` (both included) on
    ``component``, any business.

    ``until`` is the received time of the ticket being triaged: a replayed
    old message must not count the reports that came after it, and a
    ticket dated in the future must not count towards every report. The
    caller's own ticket counts when it is already saved.
    """
    if not component:
        return 0
    return Ticket.objects.filter(
        component=component, received_at__gte=since, received_at__lte=until
    ).count()


def _ids(queryset) -> set[int]:
    return set(queryset.values_list("business_id", flat=True).distinct())


def _domain_ids(domain: str) -> set[int]:
    if not domain or domain in FREE_MAIL_DOMAINS:
        return set()
    suffix = "@" + domain
    return _ids(Contact.objects.filter(email__iendswith=suffix)) | _ids(
        OnCallContact.objects.filter(email__iendswith=suffix)
    )


def _line_ids(numbers: Iterable) -> set[int]:
    wanted = set()
    for number in numbers or ():
        value = getattr(number, "e164", number)
        if isinstance(value, str) and value:
            parsed = parse_phone(value)
            if parsed:
                wanted.add(parsed[0])
    if not wanted:
        return set()
    return _ids(PhoneLine.objects.filter(number__in=wanted))


def _words(text: str) -> str:
    """Lower case, accents and punctuation gone, '&' read as 'and'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().replace("&", " and "))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " " + _NON_WORD_RE.sub(" ", plain).strip() + " "


def _name_ids(text: str) -> set[int]:
    """Businesses whose name is written in the text.

    A name found only inside a longer matching name ("Harbor Plumbing"
    inside "Harbor Plumbing & Heating") gives way to the longer one.
    """
    if not isinstance(text, str) or not text.strip():
        return set()
    haystack = _words(text[:20_000])
    spans: dict[int, tuple[int, int]] = {}
    for pk, name in Business.objects.values_list("pk", "name"):
        for variant in _name_variants(name):
            at = haystack.find(variant)
            if at >= 0:
                span = (at, at + len(variant))
                current = spans.get(pk)
                if current is None or span[1] - span[0] > current[1] - current[0]:
                    spans[pk] = span
    return {
        pk
        for pk, (start, end) in spans.items()
        if not any(
            other != pk and s <= start and end <= e and (e - s) > (end - start)
            for other, (s, e) in spans.items()
        )
    }


def _name_variants(name: str) -> list[str]:
    words = _words(name).split()
    variants = [words]
    while len(words) > 2 and words[-1] in _NAME_SUFFIXES:
        words = words[:-1]
        variants.append(words)
    return [" " + " ".join(v) + " " for v in variants if v]
