"""Checks on what admins and the customer list may store about a business.

Each raises ValidationError with a message that says what to write instead;
models attach them to fields, so admin forms, the import and any ModelForm
refuse the same values.
"""

import functools
import re
import zoneinfo

import phonenumbers
from django.core.exceptions import ValidationError

WEEKDAY_NUMBERS = range(7)
E164_EXAMPLE = "+14155550142"
# A provider (Twilio) call id: CA and 32 hex digits.
CALL_ID_RE = re.compile(r"CA[0-9a-fA-F]{32}")
_E164_SHAPE = re.compile(r"\+[1-9][0-9]{1,14}")


@functools.cache
def known_time_zones() -> frozenset[str]:
    """The IANA zone names this machine's tz database knows."""
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(value: str) -> None:
    if value not in known_time_zones():
        raise ValidationError(
            "%(value)r is not a time zone; choose an IANA zone such as "
            "America/New_York or Europe/London.",
            code="invalid_time_zone",
            params={"value": value},
        )


def validate_open_days(value) -> None:
    """A list of distinct ISO weekday numbers, Monday 0 to Sunday 6."""
    message = (
        "Open days are a list of distinct weekday numbers, Monday 0 to "
        "Sunday 6, e.g. [0, 1, 2, 3, 4] for Monday to Friday."
    )
    if not isinstance(value, list):
        raise ValidationError(message, code="invalid_open_days")
    for day in value:
        # bool is an int to Python, but `true` is no weekday.
        if isinstance(day, bool) or not isinstance(day, int):
            raise ValidationError(message, code="invalid_open_days")
        if day not in WEEKDAY_NUMBERS:
            raise ValidationError(message, code="invalid_open_days")
    if len(set(value)) != len(value):
        raise ValidationError(
            "Each open day once only; " + message, code="invalid_open_days"
        )


def validate_e164(value: str) -> None:
    """A possible phone number written in E.164 (+ country code, digits)."""
    if _E164_SHAPE.fullmatch(value) and _is_possible(value):
        return
    suggestion = e164_suggestion(value)
    hint = f" Did you mean {suggestion}?" if suggestion else ""
    raise ValidationError(
        "%(value)r is not a phone number in E.164 form: + then the country code "
        "and the number, no spaces (e.g. %(example)s).%(hint)s",
        code="invalid_e164",
        params={"value": value, "example": E164_EXAMPLE, "hint": hint},
    )


def validate_e164_or_call_id(value: str) -> None:
    """A caller's number in E.164, or a provider call id (CA + 32 hex)."""
    if CALL_ID_RE.fullmatch(value):
        return
    try:
        validate_e164(value)
    except ValidationError:
        raise ValidationError(
            "%(value)r is neither a caller number in E.164 form (e.g. "
            "%(example)s) nor a call id (CA followed by 32 hex digits).",
            code="invalid_example_call",
            params={"value": value, "example": E164_EXAMPLE},
        ) from None


def e164_suggestion(value: str) -> str:
    """The E.164 form of a number written the North American way, or ''."""
    try:
        parsed = phonenumbers.parse(value, "US")
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_possible_number(parsed):
        return ""
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _is_possible(value: str) -> bool:
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_possible_number(parsed) and (
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == value
    )
