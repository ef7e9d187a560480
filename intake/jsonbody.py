"""JSON webhook bodies: read once, refused unless a database can store them.

Python's json module reads more than JSON: NaN, Infinity and -Infinity, a
number too large for a float (1e400 becomes infinity) and strings holding a
lone UTF-16 surrogate ("\\ud800"). PostgreSQL's jsonb refuses all of them,
and so does NUL ("\\u0000"); SQLite stores some and hands them back to code
that then fails (a surrogate cannot be encoded for an SMS or Airtable). A
body read here is plain JSON whatever the database: anything else raises
JsonBodyInvalid, a ValueError whose message is the reason a provider reads
in our 400.

Nesting is capped too (MAX_DEPTH): a provider's payload is a few levels
deep, and a document nested hundreds deep can be read in one stack frame
and fail to be written or read back in a deeper one.
"""

import json

MAX_DEPTH = 32


class JsonBodyInvalid(ValueError):
    """A body we refuse: not UTF-8, not JSON, or nested too deep."""


class JsonBodyUnstorable(JsonBodyInvalid):
    """JSON that Python reads but a database cannot store as it was sent."""

    def __init__(self, reason: str):
        super().__init__(f"JSON that cannot be stored: {reason}")


def json_body_parse(body: bytes | str, *, max_depth: int = MAX_DEPTH):
    """The JSON document in a webhook body; JsonBodyInvalid says why not."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonBodyInvalid(
                f"the body is not UTF-8 (byte {exc.start} cannot be read)"
            ) from None
    try:
        document = json.loads(
            body, parse_constant=_constant_refuse, parse_float=_float_finite
        )
    except JsonBodyInvalid:
        raise
    except RecursionError:
        raise JsonBodyInvalid(
            f"the JSON is nested too deep (at most {max_depth} levels)"
        ) from None
    except ValueError as exc:
        # Also an integer of more than 4,300 digits (Python's own limit).
        raise JsonBodyInvalid(f"the body is not JSON: {exc}") from None
    json_document_check(document, max_depth=max_depth)
    return document


def json_document_check(document, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise JsonBodyInvalid unless PostgreSQL and SQLite can store `document`.

    For documents that did not come through `json_body_parse` (a service
    called with a dict). Walks without recursion, so any depth is safe.
    """
    stack = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _string_check(value)
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise JsonBodyUnstorable(
                    f"{value!r} is not a JSON number (NaN and infinities "
                    "cannot be stored)"
                )
        elif isinstance(value, dict | list):
            if depth >= max_depth:
                raise JsonBodyInvalid(
                    f"the JSON is nested too deep (at most {max_depth} levels)"
                )
            if isinstance(value, dict):
                for key, item in value.items():
                    _string_check(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)


def _constant_refuse(name: str):
    raise JsonBodyUnstorable(
        f"{name} is not a JSON number (NaN and infinities cannot be stored)"
    )


def _float_finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JsonBodyUnstorable(
            f"the number {text[:40]} is too large to be stored (it overflows "
            "to infinity)"
        )
    return value


def _string_check(text) -> None:
    if not isinstance(text, str):
        raise JsonBodyInvalid(f"a key of type {type(text).__name__} is not JSON")
    if "\x00" in text:
        raise JsonBodyUnstorable(
            "a NUL character (\\u0000) in a string cannot be stored"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # json.loads joins a valid pair of escapes into one character, so
        # what is left is a lone surrogate: not a character at all.
        raise JsonBodyUnstorable(
            f"a lone surrogate ({text[exc.start]!r}) in a string is not a "
            "character and cannot be stored"
        ) from None
