"""Writes on businesses: the import from the customer list."""

import datetime as dt
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction

from .models import WEEKDAYS, Business, Contact, OnCallContact, PhoneLine

logger = logging.getLogger(__name__)


class BusinessImportError(ValueError):
    """The customer list has a record we cannot import as it stands."""


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


def parse_open_days(text: str) -> list[int]:
    """'Mon-Fri' or 'Mon,Wed,Sat' as ISO weekday numbers (Mon=0)."""
    days: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            start = WEEKDAYS.index(first[:3].title())
            end = WEEKDAYS.index(last[:3].title()) if last else start
        except ValueError as exc:
            raise BusinessImportError(f"unknown day in {text!r}") from exc
        day = start
        while True:
            days.add(day)
            if day == end:
                break
            day = (day + 1) % 7
    return sorted(days)


def normalise_e164(number: str) -> str:
    try:
        parsed = phonenumbers.parse(number, "US")
    except phonenumbers.NumberParseException as exc:
        raise BusinessImportError(f"not a phone number: {number!r}") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise BusinessImportError(f"not a phone number: {number!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _validated(record: dict) -> dict:
    """The record as model values, checked as the admin checks them."""
    try:
        name = record["name"].strip()
        zone = record["time_zone"]
        hours = record.get("business_hours") or {}
        ZoneInfo(zone)
        opens = dt.time.fromisoformat(hours.get("open", "08:00"))
        closes = dt.time.fromisoformat(hours.get("close", "18:00"))
    except KeyError as exc:
        raise BusinessImportError(f"record lacks {exc.args[0]!r}: {record}") from exc
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BusinessImportError(f"{record.get('name')!r}: {exc}") from exc
    try:
        item = {
            "name": name,
            "fields": {
                "time_zone": zone,
                "high_value": bool(record.get("high_value", False)),
                "open_days": parse_open_days(hours.get("days", "Mon-Fri")),
                "opens_at": opens,
                "closes_at": closes,
                "airtable_base_id": record.get("airtable_base_id", ""),
            },
            "lines": [normalise_e164(n) for n in record.get("phone_lines", [])],
            "contacts": [c.strip().lower() for c in record.get("contacts", [])],
            "on_call": [
                {
                    "name": person["name"],
                    "phone": normalise_e164(person["phone"])
                    if person.get("phone")
                    else "",
                    "email": (person.get("email") or "").strip().lower(),
                    "order": order,
                }
                for order, person in enumerate(record.get("on_call", []))
            ],
        }
        # The model's own checks, so the list cannot store what the admin
        # would refuse.
        Business(name=name, **item["fields"]).full_clean(validate_unique=False)
        for number in item["lines"]:
            PhoneLine(number=number).clean_fields(exclude=["business"])
        for email in item["contacts"]:
            Contact(email=email).clean_fields(exclude=["business"])
        for person in item["on_call"]:
            contact = OnCallContact(**person)
            contact.clean_fields(exclude=["business"])
            contact.clean()
    except KeyError as exc:
        raise BusinessImportError(f"{name!r}: record lacks {exc.args[0]!r}") from exc
    except BusinessImportError as exc:
        raise BusinessImportError(f"{name!r}: {exc}") from exc
    except ValidationError as exc:
        raise BusinessImportError(f"{name!r}: {_messages(exc)}") from exc
    return item


def _messages(error: ValidationError) -> str:
    if not hasattr(error, "error_dict"):
        return " ".join(error.messages)
    return "; ".join(
        " ".join(messages)
        if field == NON_FIELD_ERRORS
        else f"{field}: {' '.join(messages)}"
        for field, messages in error.message_dict.items()
    )


@transaction.atomic
def business_import(*, records: list[dict], create_only: bool = False) -> ImportResult:
    """Create or update businesses from the customer list format.

    Idempotent: a second run with the same list changes nothing. The whole
    list is validated before anything is written. With `create_only`, a
    business already here (by name) is left as it is, whatever the list
    says: what an operator changed in admin stands.
    """
    result = ImportResult()
    for item in [_validated(r) for r in records]:
        business, created = Business.objects.get_or_create(
            name=item["name"], defaults=item["fields"]
        )
        if create_only and not created:
            result.unchanged += 1
            continue
        changed = False
        if not created:
            for field, value in item["fields"].items():
                if getattr(business, field) != value:
                    setattr(business, field, value)
                    changed = True
            if changed:
                business.save()
        changed |= _sync_children(business, item)
        if created:
            result.created += 1
        elif changed:
            result.updated += 1
        else:
            result.unchanged += 1
        logger.info(
            "business import: %s id=%s",
            "created" if created else ("updated" if changed else "unchanged"),
            business.pk,
        )
    return result


def _sync_children(business: Business, item: dict) -> bool:
    changed = False
    for number in item["lines"]:
        line, created = PhoneLine.objects.get_or_create(
            number=number, defaults={"business": business}
        )
        if not created and line.business_id != business.pk:
            raise BusinessImportError(
                f"phone line {number} already belongs to {line.business}"
            )
        changed |= created
    deleted, _ = business.phone_lines.exclude(number__in=item["lines"]).delete()
    changed |= bool(deleted)

    for email in item["contacts"]:
        _, created = Contact.objects.get_or_create(business=business, email=email)
        changed |= created
    deleted, _ = business.contacts.exclude(email__in=item["contacts"]).delete()
    changed |= bool(deleted)

    current = [
        {"name": c.name, "phone": c.phone, "email": c.email, "order": c.order}
        for c in business.on_call_contacts.all()
    ]
    if current != item["on_call"]:
        business.on_call_contacts.all().delete()
        OnCallContact.objects.bulk_create(
            OnCallContact(business=business, **person) for person in item["on_call"]
        )
        changed = True
    return changed
