"""Masking of personal data for logs: ids are fine, numbers and addresses not.

A phone number shows its last four digits at most, whatever way it is
written; an address shows its first letter and its domain. `mask_text` does
both inside free text (subjects, provider errors), and
`RequestLogMaskingFilter` does both in the query strings of web access log
lines (runserver's `django.server` logger; gunicorn's access logger when one
is configured), where admin searches put them.
"""

import logging
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote_plus, urlencode

# An address inside text: anything up to the characters that end one.
ADDRESS_IN_TEXT_RE = re.compile(r"[^\s<>\"'(),;:\[\]]+@[^\s<>\"'(),;:\[\]]+")
# A run of digits with the separators people write inside a number
# ("+1 (617) 555-0123", "617.555.0123"), and an extension after it. Runs of
# fewer than seven digits (references, times, counts) are left alone.
# Limitation: a date with its time ("2026-12-04 19") reads as a number too
# and is masked; over-masking is the safe side.
PHONE_IN_TEXT_RE = re.compile(
    r"(?P<number>[+(]?\d[\d\s().\-/]*\d)"
    r"(?P<extension>\s*(?:extension|ext\.?|x|#)\s*\d{1,6})?",
    re.IGNORECASE,
)
PHONE_MIN_DIGITS = 7
# A query string inside a request line or URL, up to where the URL ends.
QUERY_STRING_RE = re.compile(r"\?(?P<query>[^\s\"'#]*)")


def mask_phone(number: str) -> str:
    """'+16175550142' -> '***0142'; the last four digits tell lines apart.

    Separators and a leading '+' do not count: '617-555-0142' -> '***0142'.
    Six digits or fewer (a short code) -> '***'.
    """
    if not number:
        return ""
    digits = re.sub(r"\D", "", number)
    if len(digits) <= 6:
        return "***"
    return f"***{digits[-4:]}"


def mask_email(address: str) -> str:
    """'dana@harborplumbing.example' -> 'd***@harborplumbing.example'."""
    if not address or "@" not in address:
        return "***"
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def _mask_number_found(found: re.Match) -> str:
    number = found.group("number")
    if sum(ch.isdigit() for ch in number) < PHONE_MIN_DIGITS:
        return found.group(0)
    # The extension goes with the rest: its digits would be more than four.
    return mask_phone(number)


def mask_text(text: str) -> str:
    """`text` with every email address and phone number in it masked."""
    if not text:
        return text
    text = ADDRESS_IN_TEXT_RE.sub(lambda found: mask_email(found.group(0)), text)
    return PHONE_IN_TEXT_RE.sub(_mask_number_found, text)


def mask_query_string(query: str) -> str:
    """A URL's query string (no '?') with numbers and addresses masked.

    Decoded first, so '%2B16175550199', '617+555+0199' and
    'dana%40harborplumbing.example' are found; encoded again only when
    something was masked, so other lines stay exactly as they were.
    """
    pairs = parse_qsl(query, keep_blank_values=True)
    masked = [(mask_text(name), mask_text(value)) for name, value in pairs]
    if masked == pairs:
        return query
    return urlencode(masked, quote_via=quote_plus, safe="*@")


def mask_query_strings(text: str) -> str:
    """Every '?query' in `text` (a request line, a URL) masked."""
    return QUERY_STRING_RE.sub(
        lambda found: "?" + mask_query_string(found.group("query")), text
    )


class RequestLogMaskingFilter(logging.Filter):
    """Masks numbers and addresses in the query strings of access log lines.

    runserver logs '"%s" %s %s' with the request line as an argument;
    gunicorn's access logger passes a dict of atoms, 'q' the bare query
    string. Only query strings are touched: status codes and sizes stay
    as they are, and a seven-digit size is not a phone number.
    Limitation: a number or address in the path itself is not masked; no
    URL of ours puts one there.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):
            record.args = {
                name: self._masked(value, bare_query=name == "q")
                for name, value in record.args.items()
            }
        elif record.args:
            record.args = tuple(self._masked(value) for value in record.args)
        elif isinstance(record.msg, str):
            record.msg = mask_query_strings(record.msg)
        return True

    @staticmethod
    def _masked(value: object, *, bare_query: bool = False) -> object:
        if not isinstance(value, str):
            return value
        return mask_query_string(value) if bare_query else mask_query_strings(value)
