"""Triage of support email: the five required facts, a priority, escalations.

Pure functions, no database writes. The service that opens a ticket calls
them in this order:

1. ``extract_facts(...)`` with ``zone=None`` (or a default zone) and no
   business lines, to get the phone numbers mentioned (``facts.phones``);
2. ``selectors.business_for_sender(from_address=..., text=...,
   numbers=facts.phones)`` to match the business;
3. if a business matched, ``extract_facts(...)`` again with its zone and
   its phone lines, so times without a zone are read in the business's zone
   and its own numbers are recognised as its line;
4. ``triage(...)`` with those facts, the business and the count of matching
   recent reports (``selectors.matching_report_count``, this ticket
   included).

A customer's reply fills only the facts still missing: ``merge_facts(ticket,
new_facts)`` returns the combined facts, and ``Facts.ticket_fields()`` the
values to set on the ticket.

Quoted reply text (lines starting with ">") and signatures (after a "-- "
line or a sign-off such as "Thanks,") never drive triage and never give a
fact, except that a business's own line in a signature counts as given.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from .models import REQUIRED_FACTS

if TYPE_CHECKING:
    from accounts.models import Business

logger = logging.getLogger(__name__)

UTC = dt.UTC

# Limitation: only the first 20,000 characters of a message are read. Long
# forwarded threads past that point are history, not the report; the cap
# keeps a pathological message from stalling the intake worker.
MAX_TEXT = 20_000

# Limitation: only the first 40 times and 40 phone numbers of a message are
# considered; a message with more is a log paste, read by an agent.
MAX_MENTIONS = 40

# A start time later than the message by more than this is not believed.
FUTURE_SLACK = dt.timedelta(minutes=15)
NO_NOTIFICATIONS_THRESHOLD = dt.timedelta(minutes=10)
MANY_REPORTS_THRESHOLD = 3


# --- Results -----------------------------------------------------------------


@dataclass
class PhoneMention:
    """A phone number found in the message, as E.164 with its extension."""

    e164: str
    extension: str
    raw: str
    role: str  # "line" (the business's line), "caller" (an example), or ""


@dataclass
class Facts:
    """The five required facts as read from one message."""

    business_line: str = ""
    business_line_extension: str = ""
    started_at: dt.datetime | None = None
    started_at_text: str = ""
    started_at_unclear: bool = False
    symptoms: str = ""
    example_call: str = ""
    example_call_extension: str = ""
    workaround: str = ""
    phones: list[PhoneMention] = field(default_factory=list)

    def missing(self) -> list[str]:
        """The required facts not given, in ``REQUIRED_FACTS`` order.

        A start time that was written but could not be read safely (a
        repeated or skipped hour, an unclear zone) is missing: it must be
        asked about, never guessed.
        """
        given = {
            "business_line": bool(self.business_line),
            "started_at": self.started_at is not None and not self.started_at_unclear,
            "symptoms": bool(self.symptoms.strip()),
            "example_call": bool(self.example_call),
            "workaround": bool(self.workaround.strip()),
        }
        return [fact for fact in REQUIRED_FACTS if not given[fact]]

    def ticket_fields(self) -> dict:
        """The values for the Ticket's fact fields (same names)."""
        return {
            "business_line": self.business_line[:20],
            "business_line_extension": self.business_line_extension[:10],
            "started_at": self.started_at,
            "started_at_text": self.started_at_text[:200],
            "started_at_unclear": self.started_at_unclear,
            "symptoms": self.symptoms,
            "example_call": self.example_call[:64],
            "example_call_extension": self.example_call_extension[:10],
            "workaround": self.workaround,
        }


@dataclass
class TriageResult:
    priority: str
    reasons: list[str]
    escalations: list[str]
    component: str


def merge_facts(old, new: Facts) -> Facts:
    """Facts already known (on a Ticket or a Facts) kept; ``new`` fills gaps.

    A clear start time replaces an unclear one; an unclear one is kept as
    the latest wording when none was clear. Phones accumulate.
    """

    def known(name: str):
        return getattr(old, name, None) or ""

    merged = Facts(phones=list(getattr(old, "phones", None) or []) + new.phones)
    if known("business_line"):
        merged.business_line = known("business_line")
        merged.business_line_extension = known("business_line_extension")
    else:
        merged.business_line = new.business_line
        merged.business_line_extension = new.business_line_extension

    old_started = getattr(old, "started_at", None)
    old_unclear = bool(getattr(old, "started_at_unclear", False))
    if old_started is not None and not old_unclear:
        merged.started_at = old_started
        merged.started_at_text = known("started_at_text")
    elif new.started_at is not None and not new.started_at_unclear:
        merged.started_at = new.started_at
        merged.started_at_text = new.started_at_text
    elif new.started_at_text:
        merged.started_at_text = new.started_at_text
        merged.started_at_unclear = True
    else:
        merged.started_at_text = known("started_at_text")
        merged.started_at_unclear = old_unclear

    merged.symptoms = known("symptoms").strip() and known("symptoms") or new.symptoms
    if known("example_call"):
        merged.example_call = known("example_call")
        merged.example_call_extension = known("example_call_extension")
    else:
        merged.example_call = new.example_call
        merged.example_call_extension = new.example_call_extension
    merged.workaround = (
        known("workaround").strip() and known("workaround") or new.workaround
    )
    return merged


# --- Text: normalising, quotes, signatures, sentences ---------------------------

_TRANSLATE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u00a0": " ",
        "\u202f": " ",
        "\u2009": " ",
        "\t": " ",
        "\r": "",
    }
)
_SIG_DASHES_RE = re.compile(r"^--(?: |$)")
_ORIGINAL_RE = re.compile(r"^(?:-{2,}\s*original message\s*-{2,}|_{8,})\s*$", re.I)
_FORWARDED_RE = re.compile(
    r"^(?:-{2,}\s*forwarded message\s*-{2,}|begin forwarded message:?)\s*$", re.I
)
_HEADER_LINE_RE = re.compile(r"^(?:from|sent|date|to|cc|subject):\s", re.I)
# A closing block without a sign-off word: a few short lines, no sentence,
# holding a phone number or an address ("Marcus Bell / Dispatch / (617)...").
_CONTACT_LINE_RE = re.compile(r"\d{3}\D{0,3}\d{3}\D?\d{4}|@|www\.|https?://")
_SENTENCE_LIKE_RE = re.compile(
    r"[.!?]$|\b(?:line|caller|called|example|call\s+id|since|tried)\b", re.I
)
_REPLY_HEADER_RE = re.compile(r"^on\b.{0,200}\bwrote:\s*$", re.I)
_GREETING_RE = re.compile(
    r"^(?:hi|hello|hey|dear|good\s+(?:morning|afternoon|evening)|bonjour|hola)"
    r"\b[\w .'-]{0,30}[,!:.]?$",
    re.I,
)
_TICKET_TAG_RE = re.compile(r"\s*\[[A-Z]{1,6}-\d{1,9}\]")
_SIGN_OFF_RE = re.compile(
    r"^(?:thanks|thank you|many thanks|thx|regards|best|best regards|kind regards"
    r"|warm regards|cheers|sincerely|respectfully|sent from my \w+(?: \w+)?)"
    r"[\s,.!]*$",
    re.I,
)
_LABEL_LINE_RE = re.compile(
    r"^\s*(?:[-*\u2022]\s+|\d{1,2}[.)]\s+|[A-Z][\w' ]{0,30}:\s)"
)
_SENTENCE_END_RE = re.compile(r"(?<=[.!?;])\s+")
_ABBREVIATION_RE = re.compile(
    r"(?:dr|mr|mrs|ms|st|ext|no|approx|vs|etc|inc|jan|feb|mar|apr|jun|jul"
    r"|aug|sep|sept|oct|nov|dec|e\.g|i\.e|a\.m|p\.m|u\.s|[a-z])\.",
    re.I,
)
_SPACES_RE = re.compile(r"\s+")
_REPLY_PREFIX_RE = re.compile(r"^(?:(?:re|fwd?|aw|tr|sv)\s*:\s*)+", re.I)
# "Re:" (and its German and Nordic forms) names a reply: the subject is the
# old conversation's, not what the customer says now.
_ANSWER_PREFIX_RE = re.compile(r"^(?:re|aw|sv)\s*:", re.I)
# A reply that says the old problem is over.
_RECOVERED_RE = re.compile(
    r"\b(?:(?:works?|working|running)\s+(?:fine\s+|normally\s+)?again|back\s+to"
    r"\s+normal|(?:is|was|has\s+been|looks)\s+(?:resolved|fixed)|all\s+good\s+now"
    r"|everything\s+(?:is\s+|'s\s+)?(?:fine|ok(?:ay)?|good)\s+(?:now|again))\b",
    re.I,
)


# A failure word under a negation is no failure: "calls are not being
# dropped", "no summaries are missing", "isn't failing", "nothing is lost",
# "aren't affected at all", "don't worry". Only the small words of a verb
# phrase or a notification noun may stand between: "not sure why texts are
# failing" and "not just texts failing" stay failures, and so do negations
# that are themselves the failure ("not answered", "no longer arriving").
_NEGATED_GAP = (
    r"(?:\s+(?:am|is|are|was|were|be|been|being|has|have|had|do|does|did|get|gets"
    r"|getting|got|gotten|any|a|an|the|of|single|one|more|really|actually|even"
    r"|currently|seeing|having|our|my|your|their|his|her|its|calls?|callers?"
    r"|summar(?:y|ies)|texts?|txts?|sms|e-?mails?|alerts?|notifications?"
    r"|messages?|records?|anything|anyone|everything))"
)
_NEGATED_FAILURE_RE = re.compile(
    r"(?:\b(?:not|never|no\s+longer|no|nothing|none|nobody|no\s+one)\b|n't\b"
    r"|\b(?:are|is|was|were|do|does|did|have|has|had|ca|wo)nt\b)"
    rf"{_NEGATED_GAP}{{0,3}}\s+"
    r"(?:fail(?:s|ed|ing|ures?)?|drop(?:s|ped|ping)?|miss(?:es|ed|ing)?|lost"
    r"|broken|down|dead|affected|impacted|delayed|late|blocked"
    r"|bounc(?:es|ed|ing)|cut\s+off|left\s+on\s+hold|on\s+hold"
    r"|an?\s+(?:issue|problem|outage)|issues|problems|wrong|worry|panic)\b"
    r"(?:\s+(?:any\s*more|at\s+all))?",
    re.I,
)
_NEGATION_CUE_RE = re.compile(r"\b(?:not?|never|nothing|none|nobody)\b|n'?t\b", re.I)
# A sentence that says its problem is over: what comes before the words is
# the past ("texts were failing from 8:10, but it resolved itself").
_RECOVERY_RE = re.compile(
    r"\b(?:(?:resolved|fixed|sorted|cleared\s+up|corrected)\s+(?:itself|themselves)"
    r"|(?:works?|working|running)\s+(?:fine\s+|normally\s+)?again|back\s+to"
    r"\s+normal|(?:came|come|is|are|'s|'re)\s+back\s+(?:up|on|online|to\s+normal)"
    r"|(?:(?:is|are|'s|'re|seems?|looks?)\s+(?:all\s+)?|all\s+)(?:fine|ok(?:ay)?"
    r"|good|normal|working)\s+(?:now|again)|(?:has|have)\s+recovered"
    r"|everything\s+(?:is\s+|'s\s+)?(?:fine|ok(?:ay)?|good)\s+(?:now|again))\b",
    re.I,
)


# "It resolved itself at 9:30", "Everything is fine now": the whole problem,
# so what the sentences before it say failed is over too.
# Limitation: a recovery that names one channel in its own sentence ("Texts
# failed at 8. Emails are back to normal.") clears nothing before it; the
# earlier failure still counts, which errs towards the higher priority.
_WHOLE_RECOVERED_RE = re.compile(
    r"^(?:(?:and|but|then|now|anyway|luckily|thankfully)\W+)?(?:(?:it|this|that"
    r"|things|all|the\s+(?:problem|issue|outage))(?:'s|\s+(?:is|was|has|seems|looks"
    r"|just))?(?:\s+all)?\s*)?$",
    re.I,
)


def _present_all(sentences: tuple[str, ...]) -> tuple[str, ...]:
    present = [_present(sentence) for sentence in sentences]
    for index, sentence in enumerate(sentences):
        recovered = _RECOVERY_RE.search(sentence)
        if recovered and _WHOLE_RECOVERED_RE.match(sentence[: recovered.start()]):
            present[:index] = [""] * index
    return tuple(present)


def _present(sentence: str) -> str:
    """The sentence with what is not a failure now taken out."""
    recovered = _RECOVERY_RE.search(sentence)
    if recovered:
        sentence = sentence[recovered.end() :]
    if _NEGATION_CUE_RE.search(sentence):
        # A clause break in its place, so "the SMS isn't failing and texts
        # arrive" does not read the noun of one clause with the other.
        sentence = _NEGATED_FAILURE_RE.sub(",", sentence)
    return sentence


def _normalise(text) -> str:
    if not isinstance(text, str):
        return ""
    return text[:MAX_TEXT].translate(_TRANSLATE)


def _split_body(body: str) -> tuple[str, str]:
    """(the customer's own words, their signature) without quoted history."""
    lines = body.split("\n")
    kept: list[str] = []
    signature: list[str] = []
    in_forward_header = False
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(">"):
            continue
        if _ORIGINAL_RE.match(stripped):
            break
        if _FORWARDED_RE.match(stripped):
            in_forward_header = True
            continue
        if in_forward_header:
            if _HEADER_LINE_RE.match(stripped) or not stripped:
                continue
            in_forward_header = False
        if _REPLY_HEADER_RE.match(stripped):
            continue
        if not any(k.strip() for k in kept) and _GREETING_RE.match(stripped):
            continue
        if _SIG_DASHES_RE.match(line):
            signature = lines[index:]
            break
        if _SIGN_OFF_RE.match(stripped):
            rest = [r for r in lines[index + 1 :] if r.strip()]
            if len(rest) <= 6 and not any(r.lstrip().startswith(">") for r in rest):
                signature = lines[index:]
                break
        kept.append(line)
    if not signature:
        kept, signature = _trailing_contact_block(kept)
    return "\n".join(kept), "\n".join(signature)


def _trailing_contact_block(lines: list[str]) -> tuple[list[str], list[str]]:
    """Split off a last paragraph that reads as a signature, not a report."""
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    start = end
    while start and lines[start - 1].strip():
        start -= 1
    block = [line.strip() for line in lines[start:end]]
    if (
        start
        and 1 <= len(block) <= 5
        and all(len(line) <= 60 for line in block)
        and not any(_SENTENCE_LIKE_RE.search(line) for line in block)
        and any(_CONTACT_LINE_RE.search(line) for line in block)
    ):
        return lines[:start], lines[start:end]
    return lines, []


def _sentences(text: str) -> list[str]:
    """Sentences, with hard-wrapped lines joined and labelled lines kept apart."""
    units: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        current: list[str] = []
        for line in paragraph.split("\n"):
            if not line.strip():
                continue
            if current and _LABEL_LINE_RE.match(line):
                units.append(" ".join(current))
                current = []
            current.append(line.strip())
        if current:
            units.append(" ".join(current))
    sentences: list[str] = []
    for unit in units:
        unit = _SPACES_RE.sub(" ", unit).strip()
        start = 0
        for match in _SENTENCE_END_RE.finditer(unit):
            chunk = unit[start : match.start()]
            last_word = chunk[-12:].rpartition(" ")[2]
            if _ABBREVIATION_RE.fullmatch(last_word):
                continue
            if chunk.strip():
                sentences.append(chunk.strip())
            start = match.end()
        if unit[start:].strip():
            sentences.append(unit[start:].strip())
    return sentences


@dataclass(frozen=True)
class _Text:
    """A message's sentences (shared between calls: never mutated)."""

    subject: tuple[str, ...]
    body: tuple[str, ...]
    signature: tuple[str, ...]
    all: tuple[str, ...]
    lower: str
    # ``all`` with what is not a failure now taken out: negated failure
    # phrases ("calls are not being dropped") and what a sentence says is
    # over ("... but it resolved itself"). The failure rules read these.
    present: tuple[str, ...] = ()


def _prepare(subject, body) -> _Text:
    """The message's sentences; the same message is prepared once."""
    if not isinstance(subject, str):
        subject = ""
    if not isinstance(body, str):
        body = ""
    return _prepare_cached(subject, body)


@lru_cache(maxsize=16)
def _prepare_cached(subject: str, body: str) -> _Text:
    main, signature = _split_body(_normalise(body))
    subject_text = _SPACES_RE.sub(" ", _normalise(subject)).strip()
    is_reply = bool(_ANSWER_PREFIX_RE.match(subject_text))
    subject_text = _REPLY_PREFIX_RE.sub("", _TICKET_TAG_RE.sub("", subject_text))
    subject_part = (subject_text,) if subject_text else ()
    body_part = tuple(_sentences(main))
    if is_reply and any(_RECOVERED_RE.search(s) for s in body_part):
        # A reply's subject reports the old problem ("Re: lines down"); a
        # reply that says all is well again is not triaged by it. Any other
        # reply keeps it: "Re: lines down" over "still!!" is still an outage.
        subject_part = ()
    every = subject_part + body_part
    return _Text(
        subject=subject_part,
        body=body_part,
        signature=tuple(_sentences(signature)),
        all=every,
        lower=" \n ".join(every).lower(),
        present=_present_all(every),
    )


def _excerpt(text: str, limit: int = 60) -> str:
    text = _SPACES_RE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


# --- Phone numbers -------------------------------------------------------------

_PHONE_RE = re.compile(
    r"""
    (?<![\w+/.$-])
    (?:
        \+\d{1,3}[\s.-]?(?:\(?\d{1,4}\)?[\s.-]?){1,4}\d{2,4}
      | (?:1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}
    )
    (?:\s*;\s*ext=\d{1,6}|,?\s*(?:ext\.?|extension|x|\#)\s*\d{1,6})?
    (?![\w/])
    """,
    re.X | re.I,
)
_CALL_ID_RE = re.compile(r"\bCA[0-9a-fA-F]{32}\b")
_OTHER_CALL_ID_RE = re.compile(
    r"\bcall\s*(?:id|sid)\s*(?:is|was|:|#|=)?\s*(?P<id>(?=[A-Za-z0-9_-]*\d)"
    r"[A-Za-z0-9][A-Za-z0-9_-]{7,63})\b",
    re.I,
)
_LINE_CUE_RE = re.compile(
    r"\b(?:lines?|hotline|(?:our|main|business|office|company|clinic|shop)\s+"
    r"(?:phone\s+)?number|calls?\s+(?:to|into)|dial(?:l)?ed|forwarded|routed"
    r"|number\s+(?:we|you)\s+(?:answer|forward|route))\b",
    re.I,
)
_CALLER_CUE_RE = re.compile(
    r"\b(?:callers?(?:'s)?|called\s+(?:us\s+|in\s+)?from|call(?:ing|s)?\s+from"
    r"|rang\s+(?:us\s+)?from|texted\s+from|from|example|e\.g\.|for\s+instance"
    r"|such\s+as|call\s*back\s+number"
    r"|(?:tenant|patient|client|customer|homeowner|resident)(?:'s)?)(?![\w'])",
    re.I,
)
_CONTACT_CUE_RE = re.compile(
    r"\b(?:call\s+me|reach\s+me|text\s+me|call\s+(?:us\s+)?back\s+(?:at|on)"
    r"|my\s+(?:cell|mobile|phone|number|direct(?:\s+line)?)|on-?call(?:\s+\w+){0,2}"
    r"|owner'?s\s+(?:cell|phone|number)|cell|mobile|fax|tel|direct)\b",
    re.I,
)


def parse_phone(text: str, default_region: str = "US") -> tuple[str, str] | None:
    """The first phone number in ``text`` as (E.164, extension), else None.

    Extensions written "x22", "ext. 5", "extension 7", "#22" or ";ext=22"
    are kept apart. Never raises.
    """
    if not isinstance(text, str) or not text:
        return None
    match = _PHONE_RE.search(_normalise(text)[:500])
    if match is None:
        return None
    return _parse_candidate(match.group(0), default_region)


@lru_cache(maxsize=4096)
def _parse_candidate(raw: str, region: str = "US") -> tuple[str, str] | None:
    try:
        number = phonenumbers.parse(raw, region)
    except (phonenumbers.NumberParseException, TypeError, ValueError):
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, number.extension or ""


def phone_numbers_in(text: str) -> list[str]:
    """Every valid phone number in ``text`` as E.164, in order, no repeats."""
    found = []
    for match in _PHONE_RE.finditer(_normalise(text)):
        parsed = _parse_candidate(match.group(0))
        if parsed:
            found.append(parsed[0])
    return list(dict.fromkeys(found))


def _nearest_cue(before: str, after: str) -> str:
    """'line', 'caller', 'contact' or '' from the words around a number."""
    best: tuple[int, int, str] | None = None
    for kind, pattern in (
        ("line", _LINE_CUE_RE),
        ("caller", _CALLER_CUE_RE),
        ("contact", _CONTACT_CUE_RE),
    ):
        for match in pattern.finditer(before):
            key = (match.end(), match.end() - match.start(), kind)
            if best is None or key[:2] > best[:2]:
                best = key
    if best is not None:
        return best[2]
    nearest: tuple[int, str] | None = None
    window = after[:30]
    for kind, pattern in (
        ("line", _LINE_CUE_RE),
        ("caller", _CALLER_CUE_RE),
        ("contact", _CONTACT_CUE_RE),
    ):
        match = pattern.search(window)
        if match and (nearest is None or match.start() < nearest[0]):
            nearest = (match.start(), kind)
    return nearest[1] if nearest else ""


def _phone_mentions(
    sentences: Sequence[str], lines: set[str], *, signature: bool
) -> list[tuple[PhoneMention, str]]:
    """Mentions with their cue ('line', 'caller', 'contact', '')."""
    found = []
    for sentence in sentences:
        if len(found) >= MAX_MENTIONS:
            break
        matches = list(_PHONE_RE.finditer(sentence))
        for index, match in enumerate(matches):
            parsed = _parse_candidate(match.group(0))
            if parsed is None:
                continue
            e164, extension = parsed
            start = matches[index - 1].end() if index else 0
            end = matches[index + 1].start() if index + 1 < len(matches) else None
            before = sentence[max(start, match.start() - 60) : match.start()]
            after = sentence[match.end() : end]
            cue = "contact" if signature else _nearest_cue(before, after)
            if e164 in lines:
                cue = "line"
            role = cue if cue in ("line", "caller") else ""
            found.append((PhoneMention(e164, extension, match.group(0), role), cue))
    return found


# --- Times ---------------------------------------------------------------------

_ZONE_PATTERN = r"""
    (?:utc|gmt)\s*[+-]\s*\d{1,2}(?::?\d{2})?
  | (?:America|Europe|Asia|Africa|Australia|Pacific|Atlantic|Indian|Etc)
    /[A-Za-z_]+(?:/[A-Za-z_]+)?
  | (?:eastern|central|mountain|pacific|alaska|hawaii|atlantic|newfoundland)
    (?:\s+(?:standard|daylight))?(?:\s+time)?
  | akst|akdt|aest|aedt|cest|[ecmp][sd]t|hst|ast|adt|nst|ndt|utc|gmt|bst|ist
  | mesz|mez|cet|jst|sgt|hkt|[ecmp]t
  | local\s+time
"""
# A part of the day written after a clock reading without AM or PM ("around
# 10 last night", "6:30 this morning") says which half of the day it is.
_DAY_PART = r"""(?:last\s+night|tonight|yesterday\s+(?:morning|afternoon|evening)
    |this\s+(?:morning|afternoon|evening)|in\s+the\s+(?:morning|afternoon|evening)
    |at\s+night)\b"""
_TIME_RE = re.compile(
    rf"""
    (?<![\w:.$/-])
    (?:
        (?P<h>1[0-2]|0?[1-9])(?:[:.](?P<m>[0-5]\d))?\s*(?P<mer>[ap])\.?\s?m\b\.?
      | (?P<ph>1[0-2]|0?[1-9])(?::(?P<pm>[0-5]\d))?(?![\d:])\s+(?P<part>{_DAY_PART})
      | (?P<H>[01]?\d|2[0-3]):(?P<M>[0-5]\d)(?![\d:])(?!\s*[ap]\.?\s?m\b)
      | (?P<word>noon|midnight)\b
    )
    (?:\s*\(?\s*(?P<zone>{_ZONE_PATTERN})(?![A-Za-z])\)?)?
    """,
    re.X | re.I,
)
_MONTH_PATTERN = (
    r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?"
    r"|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DAY_PATTERN = r"(?P<day>[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_DATE_RES = [
    (
        "md",
        re.compile(
            rf"\b{_MONTH_PATTERN}\.?\s+{_DAY_PATTERN}(?![\d:])"
            r"(?:,?\s+(?P<year>20\d\d)\b)?",
            re.I,
        ),
    ),
    (
        "md",
        re.compile(
            rf"\b{_DAY_PATTERN}\s+(?:of\s+)?{_MONTH_PATTERN}\b"
            r"(?:,?\s+(?P<year>20\d\d)\b)?",
            re.I,
        ),
    ),
    (
        "iso",
        re.compile(
            r"\b(?P<year>20\d\d)-(?P<mon>0[1-9]|1[0-2])-(?P<day>0[1-9]|[12]\d|3[01])\b"
        ),
    ),
    (
        "numeric",
        re.compile(
            r"(?:\bon\s+(?P<a>[12]\d|3[01]|0?[1-9])/(?P<b>[12]\d|3[01]|0?[1-9])"
            r"(?:/(?P<y1>(?:20)?\d\d))?"
            r"|(?<![\d/])(?P<c>[12]\d|3[01]|0?[1-9])/(?P<d>[12]\d|3[01]|0?[1-9])"
            r"/(?P<y2>(?:20)?\d\d))(?![\d/])",
            re.I,
        ),
    ),
    (
        "rel",
        re.compile(
            r"\b(?P<rel>yesterday(?:\s+(?:morning|afternoon|evening|night))?|today"
            r"|tonight|this\s+(?:morning|afternoon|evening)|last\s+night"
            r"|earlier\s+today|the\s+night\s+before)\b",
            re.I,
        ),
    ),
    (
        "weekday",
        re.compile(
            r"\b(?:(?P<last>last|this\s+past)\s+)?(?P<wd>monday|tuesday|wednesday"
            r"|thursday|friday|saturday|sunday)\b",
            re.I,
        ),
    ),
]
_REL_DATE_RE = dict(_DATE_RES)["rel"]
# A bare hour ("around 10 last night") is a time only after one of these;
# "we had 3 last night" counts calls.
_BARE_HOUR_CUE_RE = re.compile(
    r"\b(?:at|around|about|since|from|after|before|until|till|by|approx\.?"
    r"|roughly|like|near)\s*~?\s*$",
    re.I,
)
_ISO_DATETIME_RE = re.compile(
    r"\b20\d\d-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d)?(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?(?!\d)"
)
_NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "ten": 10,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "forty-five": 45,
    "fortyfive": 45,
}
_AMOUNT = (
    r"(?P<n>\d{1,3}|an?|one|two|three|four|five|six|ten|fifteen|twenty|thirty"
    r"|forty-?five|half\s+an?)"
)
_UNIT = r"(?P<unit>minutes?|mins?|hours?|hrs?)"
_AGO_RE = re.compile(rf"\b{_AMOUNT}\s*{_UNIT}\s+ago\b", re.I)
_FOR_PAST_RE = re.compile(
    rf"\bfor\s+(?:about\s+|around\s+|over\s+)?(?:the\s+)?(?:last|past)\s+"
    rf"(?:{_AMOUNT}\s*)?{_UNIT}\b",
    re.I,
)
_START_CUE_RE = re.compile(
    r"\b(?:since|start(?:ed|ing|s)?|began|begin(?:ning)?|from|after|as\s+of"
    r"|noticed|first|onwards?)\b",
    re.I,
)
_CALL_TIME_CUE_RE = re.compile(r"\b(?:call(?:ed|er|s)?|example|rang|phoned)\b", re.I)
_MONTHS = {
    name: index
    for index, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_WEEKDAYS = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
]

_NORTH_AMERICA_EAST = (
    "America/New_York",
    "America/Toronto",
    "America/Detroit",
    "America/Indiana/Indianapolis",
    "America/Kentucky/Louisville",
)
_NORTH_AMERICA_CENTRAL = ("America/Chicago", "America/Winnipeg", "America/Indiana/Knox")
_NORTH_AMERICA_MOUNTAIN = (
    "America/Denver",
    "America/Phoenix",
    "America/Edmonton",
    "America/Boise",
)
_NORTH_AMERICA_PACIFIC = ("America/Los_Angeles", "America/Vancouver")
_ATLANTIC = ("America/Halifax", "America/Puerto_Rico")
_CENTRAL_EUROPE = (
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Rome",
    "Europe/Amsterdam",
    "Europe/Brussels",
    "Europe/Vienna",
    "Europe/Zurich",
    "Europe/Stockholm",
    "Europe/Oslo",
    "Europe/Copenhagen",
    "Europe/Warsaw",
    "Europe/Prague",
)
# What a written zone can mean: each entry a tuple of meanings, each meaning
# a tuple of IANA zones (the first is used when the business is elsewhere).
# Several meanings make the word unclear unless the business's zone settles
# it. Limitation: a standard-time word in summer ("EST" in July) is read as
# the zone's wall time, which is how people use it.
_ZONE_MEANINGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "eastern": (_NORTH_AMERICA_EAST,),
    "et": (_NORTH_AMERICA_EAST,),
    "est": (_NORTH_AMERICA_EAST,),
    "edt": (_NORTH_AMERICA_EAST,),
    "central": (_NORTH_AMERICA_CENTRAL,),
    "ct": (_NORTH_AMERICA_CENTRAL,),
    "cdt": (_NORTH_AMERICA_CENTRAL,),
    "cst": (_NORTH_AMERICA_CENTRAL, ("Asia/Shanghai", "Asia/Taipei")),
    "mountain": (_NORTH_AMERICA_MOUNTAIN,),
    "mt": (_NORTH_AMERICA_MOUNTAIN,),
    "mdt": (_NORTH_AMERICA_MOUNTAIN,),
    "mst": (_NORTH_AMERICA_MOUNTAIN, ("Asia/Kuala_Lumpur",)),
    "pacific": (_NORTH_AMERICA_PACIFIC,),
    "pt": (_NORTH_AMERICA_PACIFIC,),
    "pst": (_NORTH_AMERICA_PACIFIC,),
    "pdt": (_NORTH_AMERICA_PACIFIC,),
    "alaska": (("America/Anchorage",),),
    "akst": (("America/Anchorage",),),
    "akdt": (("America/Anchorage",),),
    "hawaii": (("Pacific/Honolulu",),),
    "hst": (("Pacific/Honolulu",),),
    "atlantic": (_ATLANTIC,),
    "adt": (_ATLANTIC,),
    "ast": (_ATLANTIC, ("Asia/Riyadh", "Asia/Baghdad")),
    "newfoundland": (("America/St_Johns",),),
    "nst": (("America/St_Johns",),),
    "ndt": (("America/St_Johns",),),
    "utc": (("UTC",),),
    "gmt": (("UTC",),),
    "bst": (("Europe/London",), ("Asia/Dhaka",)),
    "ist": (("Asia/Kolkata",), ("Asia/Jerusalem",), ("Europe/Dublin",)),
    "cet": (_CENTRAL_EUROPE,),
    "cest": (_CENTRAL_EUROPE,),
    # German: Mitteleuropäische (Sommer)Zeit.
    "mez": (_CENTRAL_EUROPE,),
    "mesz": (_CENTRAL_EUROPE,),
    "aest": (("Australia/Sydney", "Australia/Melbourne", "Australia/Brisbane"),),
    "aedt": (("Australia/Sydney", "Australia/Melbourne"),),
    "jst": (("Asia/Tokyo",),),
    "sgt": (("Asia/Singapore",),),
    "hkt": (("Asia/Hong_Kong",),),
}
_OFFSET_RE = re.compile(
    r"(?:utc|gmt)\s*(?P<sign>[+-])\s*(?P<h>\d{1,2})(?::?(?P<m>\d{2}))?", re.I
)


@lru_cache(maxsize=512)
def _zoneinfo(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        return None


def _as_zone(zone) -> dt.tzinfo | None:
    if zone is None or zone == "":
        return None
    if isinstance(zone, dt.tzinfo):
        return zone
    if isinstance(zone, str):
        return _zoneinfo(zone.strip())
    return None


def _zone_name(zone: dt.tzinfo | None) -> str:
    return getattr(zone, "key", "") or ""


def _zone_for_word(word: str, default: dt.tzinfo | None) -> dt.tzinfo | None:
    """The zone a written zone word means, or None when it is unclear."""
    # Limitation: the offset in the message's Date header (-0600 beside
    # "CST") is not used to settle a word with several meanings; only the
    # business's zone does, so an unknown sender is asked.
    word = _SPACES_RE.sub(" ", word.strip())
    offset = _OFFSET_RE.fullmatch(word)
    if offset:
        hours, minutes = int(offset["h"]), int(offset["m"] or 0)
        if hours > 14 or minutes > 59:
            return None
        delta = dt.timedelta(hours=hours, minutes=minutes)
        return dt.timezone(-delta if offset["sign"] == "-" else delta)
    if "/" in word:
        return _zoneinfo(word)
    key = word.lower()
    if key == "local time":
        return default
    key = re.sub(r"\s+(?:standard|daylight)|\s+time", "", key)
    meanings = _ZONE_MEANINGS.get(key)
    if not meanings:
        return None
    default_name = _zone_name(default)
    if len(meanings) > 1:
        exact = [m for m in meanings if default_name in m]
        area = default_name.partition("/")[0] if "/" in default_name else ""
        same_area = [
            m for m in meanings if area and any(z.startswith(area + "/") for z in m)
        ]
        if len(exact) == 1:
            meanings = tuple(exact)
        elif len(same_area) == 1:
            meanings = tuple(same_area)
        else:
            return None
    zones = meanings[0]
    return _zoneinfo(default_name if default_name in zones else zones[0])


@dataclass
class _TimeCandidate:
    position: int
    score: int
    text: str
    value: dt.datetime | None
    unclear: bool
    # Reading a clock time is left until it wins: most lose.
    resolve: Callable[[], tuple[dt.datetime | None, bool]] | None = None


_DAYLIGHT_WORDS = frozenset(
    {"edt", "cdt", "mdt", "pdt", "akdt", "adt", "ndt", "aedt", "cest", "mesz", "bst"}
)


def _says_daylight(zone_word: str) -> bool:
    """Whether the zone word names summer time ("EDT", "Eastern Daylight")."""
    word = zone_word.strip().lower()
    return word in _DAYLIGHT_WORDS or "daylight" in word


def _localise(
    naive: dt.datetime, zone: dt.tzinfo, *, daylight: bool = False
) -> dt.datetime | None:
    """``naive`` as an aware time in ``zone``; None if it is repeated or skipped.

    With ``daylight`` a repeated time is the summer-time one: "1:30 AM EDT"
    on the night clocks go back names the first 1:30. A standard-time word
    settles nothing, since people write "EST" all year round.
    """
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    if not daylight:
        return None
    for candidate in (first, second):
        if not candidate.dst():
            continue
        round_trip = candidate.astimezone(UTC).astimezone(zone)
        if round_trip.replace(tzinfo=None) == naive and round_trip.dst():
            return candidate
    return None


def _date_spans(sentence: str) -> list[tuple[int, int, str, re.Match]]:
    spans = []
    for kind, pattern in _DATE_RES:
        for match in pattern.finditer(sentence):
            spans.append((match.start(), match.end(), kind, match))
    return spans


def _nearest_date(spans, start: int, end: int, low: int, high: int):
    best = None
    for span in spans:
        s, e = span[0], span[1]
        if s < low or e > high or (s < end and e > start):
            continue
        gap = start - e if e <= start else s - end
        if gap > 40:
            continue
        key = (gap, 0 if s >= end else 1)
        if best is None or key < best[0]:
            best = (key, span)
    return best[1] if best else None


def _day_for(
    span, *, hour: int, zone: dt.tzinfo, local_now: dt.datetime
) -> tuple[dt.date | None, bool]:
    """(date, roll back a day if that makes it future) for a date phrase."""
    today = local_now.date()
    if span is None:
        return today, True
    kind, match = span[2], span[3]
    if kind == "rel":
        rel = _SPACES_RE.sub(" ", match["rel"].lower())
        if rel.startswith("yesterday"):
            return today - dt.timedelta(days=1), False
        if rel in ("last night", "the night before"):
            if hour >= 12:
                return today - dt.timedelta(days=1), False
            return today, True
        if rel == "tonight":
            return today, True
        return today, False
    if kind == "weekday":
        weekday = _WEEKDAYS.index(match["wd"].lower())
        back = (today.weekday() - weekday) % 7
        if back == 0 and match["last"]:
            back = 7
        return today - dt.timedelta(days=back), back == 0
    if kind == "numeric":
        month_text = match["a"] or match["c"]
        day_text = match["b"] or match["d"]
        year_text = match["y1"] or match["y2"]
        month, day = int(month_text), int(day_text)
        if month > 12:
            # "14/12" can only be day/month.
            if day > 12:
                return None, False
            month, day = day, month
        # Read as month/day (US); elsewhere 3/4 could be either.
        elif not _zone_name(zone).startswith("America/") and day <= 12 and month != day:
            return None, False
    else:
        month_text = match["mon"]
        month = int(month_text) if month_text.isdigit() else _MONTHS[month_text.lower()]
        day = int(match["day"])
        year_text = match["year"]
    try:
        if year_text:
            year = int(year_text)
            year = year + 2000 if year < 100 else year
            return dt.date(year, month, day), False
        candidate = dt.date(today.year, month, day)
        # "Dec 30" read on Jan 2 is last year's; a date a few days ahead is
        # a slip, left to the future check to call unclear.
        if candidate > today + dt.timedelta(days=31):
            candidate = dt.date(today.year - 1, month, day)
        return candidate, False
    except ValueError:
        return None, False


def _amount(match: re.Match) -> dt.timedelta | None:
    text = (match["n"] or "1").lower()
    if text.startswith("half"):
        minutes = 30.0
    else:
        number = int(text) if text.isdigit() else _NUMBER_WORDS.get(text, 0)
        unit = match["unit"].lower()
        minutes = number * (60 if unit.startswith("h") else 1)
    if not minutes or minutes > 60 * 24 * 14:
        return None
    return dt.timedelta(minutes=minutes)


def _time_candidates(
    sentences: Sequence[str], *, received_at: dt.datetime, default: dt.tzinfo | None
) -> list[_TimeCandidate]:
    found: list[_TimeCandidate] = []
    message_zone: dt.tzinfo | None = None
    zoned: list[tuple[str, re.Match, int, list, int, int]] = []
    position = 0
    for sentence in sentences:
        if len(zoned) >= MAX_MENTIONS or len(found) >= MAX_MENTIONS:
            break
        matches = [
            match
            for match in _TIME_RE.finditer(sentence)
            if not match["ph"]
            or match["pm"]
            or _BARE_HOUR_CUE_RE.search(
                sentence, max(0, match.start() - 12), match.start()
            )
        ]
        spans = _date_spans(sentence) if matches else []
        for index, match in enumerate(matches):
            zone_word = match["zone"] or ""
            if len(zone_word) == 2 and not zone_word.isupper():
                zone_word = ""
            if zone_word and message_zone is None:
                message_zone = _zone_for_word(zone_word, default)
            low = matches[index - 1].end() if index else 0
            high = (
                matches[index + 1].start()
                if index + 1 < len(matches)
                else len(sentence)
            )
            zoned.append((sentence, match, position + index, spans, low, high))
        for match in _ISO_DATETIME_RE.finditer(sentence):
            found.append(_iso_candidate(match, position, received_at, default))
        for pattern, bonus in ((_AGO_RE, 0), (_FOR_PAST_RE, 4)):
            for match in pattern.finditer(sentence):
                delta = _amount(match)
                if delta is None:
                    continue
                score = bonus + 1 + _start_score(sentence, match.start())
                found.append(
                    _TimeCandidate(
                        position, score, match.group(0), received_at - delta, False
                    )
                )
        position += max(len(matches), 1)

    for sentence, match, order, spans, low, high in zoned:
        found.append(
            _clock_candidate(
                sentence,
                match,
                order,
                spans,
                low,
                high,
                received_at=received_at,
                default=default,
                message_zone=message_zone,
            )
        )
    return found


def _start_score(sentence: str, start: int) -> int:
    before = sentence[max(0, start - 30) : start]
    score = 4 if _START_CUE_RE.search(before) else 0
    if not score and re.search(r"\bat\s+(?:about\s+|around\s+)?$", before, re.I):
        if _CALL_TIME_CUE_RE.search(sentence[:start]):
            score -= 2
    return score


def _iso_candidate(match, position, received_at, default) -> _TimeCandidate:
    text = match.group(0)
    try:
        value = dt.datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        return _TimeCandidate(position, 3, text, None, True)
    if value.tzinfo is None:
        if default is None:
            return _TimeCandidate(position, 3, text, None, True)
        value = _localise(value, default)
        if value is None:
            return _TimeCandidate(position, 3, text, None, True)
    value = value.astimezone(UTC)
    if value > received_at + FUTURE_SLACK:
        return _TimeCandidate(position, 3, text, None, True)
    return _TimeCandidate(position, 3, text, value, False)


def _clock_candidate(
    sentence: str,
    match: re.Match,
    order: int,
    spans: list,
    low: int,
    high: int,
    *,
    received_at: dt.datetime,
    default: dt.tzinfo | None,
    message_zone: dt.tzinfo | None,
) -> _TimeCandidate:
    zone_word = match["zone"] or ""
    if len(zone_word) == 2 and not zone_word.isupper():
        zone_word = ""
    time_end = match.end()
    if match["zone"] and not zone_word:
        time_end = match.start("zone")
    if match["part"]:
        # The part of the day is the date too ("last night", "this morning").
        rel = _REL_DATE_RE.search(match["part"])
        date_span = (
            (match.start("part"), match.end("part"), "rel", rel) if rel else None
        )
    else:
        date_span = _nearest_date(spans, match.start(), time_end, low, high)

    start = min(match.start(), date_span[0]) if date_span else match.start()
    end = max(time_end, date_span[1]) if date_span else time_end
    text = sentence[start:end].strip(" ,;")
    score = _start_score(sentence, match.start())
    score += 2 if zone_word else 0
    score += 1 if date_span or match["part"] else 0

    def resolve() -> tuple[dt.datetime | None, bool]:
        value = _clock_value(
            match,
            zone_word,
            date_span,
            received_at=received_at,
            default=default,
            message_zone=message_zone,
        )
        return value, value is None

    return _TimeCandidate(order, score, text, None, False, resolve)


def _day_part_hour(hour: int, part: str) -> int | None:
    """The 24-hour hour of "10 last night" or "6:30 this morning", or None.

    Only the readings people mean are accepted: "5 last night" or "9 this
    afternoon" could be either half of the day and stay unclear.
    """
    part = part.lower()
    if "morning" in part:
        return hour if hour < 12 else None
    if "afternoon" in part:
        return 12 if hour == 12 else hour + 12 if hour <= 6 else None
    if "evening" in part:
        return hour + 12 if 5 <= hour <= 11 else None
    # Night: the evening before midnight, or the small hours after it.
    if 6 <= hour <= 11:
        return hour + 12
    if hour == 12:
        return 0
    return hour if hour <= 4 else None


def _clock_value(
    match: re.Match,
    zone_word: str,
    date_span,
    *,
    received_at: dt.datetime,
    default: dt.tzinfo | None,
    message_zone: dt.tzinfo | None,
) -> dt.datetime | None:
    """The aware UTC time a clock reading means, or None when unclear."""
    # The clock reading.
    ambiguous_meridiem = False
    if match["word"]:
        hour, minute = (12, 0) if match["word"].lower() == "noon" else (0, 0)
    elif match["part"]:
        hour = _day_part_hour(int(match["ph"]), match["part"])
        minute = int(match["pm"] or 0)
        if hour is None:
            return None
    elif match["mer"]:
        hour = int(match["h"]) % 12 + (12 if match["mer"].lower() == "p" else 0)
        minute = int(match["m"] or 0)
    else:
        hour, minute = int(match["H"]), int(match["M"])
        # "21:30" and "08:15" are 24-hour; "9:30" alone could be either.
        ambiguous_meridiem = 1 <= hour <= 12 and not match["H"].startswith("0")
    if ambiguous_meridiem:
        return None

    # The zone: written beside the time, else elsewhere in the message,
    # else the business's.
    if zone_word:
        zone = _zone_for_word(zone_word, default)
    else:
        zone = message_zone or default
    if zone is None:
        return None

    local_now = received_at.astimezone(zone)
    day, roll_back = _day_for(date_span, hour=hour, zone=zone, local_now=local_now)
    if day is None:
        return None
    naive = dt.datetime.combine(day, dt.time(hour, minute))
    if roll_back and naive > local_now.replace(tzinfo=None) + dt.timedelta(minutes=5):
        naive -= dt.timedelta(days=1)
    try:
        value = _localise(naive, zone, daylight=_says_daylight(zone_word))
    except (OverflowError, ValueError):
        value = None
    if value is None:
        return None
    value = value.astimezone(UTC)
    if value > received_at + FUTURE_SLACK:
        return None
    return value


# --- Symptoms and workaround ----------------------------------------------------

# "Only" is a symptom when it limits what arrived ("only getting half"),
# not in "Luis is the only one on call".
_SYMPTOM_CUE_RE = re.compile(
    r"(?:\b(?:not|never|no|none|nothing|without|fail\w*|errors?|broken|wrong"
    r"|missing|miss(?:ed|ing)?|lost|dead|down|busy|slow\w*|delay\w*|late|stuck"
    r"|stopped|instead|hard\s+to|unable|problems?|issues?|glitch\w*|bugs?"
    r"|outages?|seeing|duplicat\w*|twice|blank|empty|garbled|took|off|but"
    r"|only\s+(?:some|a\s+few|half|part|one\s+of|\d+|by|via|getting|get|got|came"
    r"|comes?|arriv\w*|shows?|works?|found\s+out)"
    r"|another|someone\s+else|(?:meant|intended)\s+for|belong(?:s|ing)?\s+to"
    r"|cannot|drop\w*|cut\s+off|disconnect\w*|bounc\w*|reject\w*|undeliver\w*"
    r"|tim(?:ing|ed)\s+out|voice\s?mail|unanswered|silence|disappeared|gone"
    r"|typos?|misspel\w*|spell(?:s|ed|ing)?|format\w*|spacing|all\s+caps"
    r"|looks?\s+(?:odd|weird)|run\s+together|on\s+hold|kept\s+waiting|spam|junk"
    r"|hung\s+up|nobody|no\s+one|forever)\b|n't\b"
    r"|\b(?:are|is|was|were|do|does|did|have|has|had|ca|wo)nt\b)",
    re.I,
)
_WORKAROUND_NONE_RE = re.compile(
    r"\b(?:no\s+work-?\s?arounds?|(?:have\s*not|haven'?t|didn'?t|did\s+not"
    r"|have\s+not\s+yet|not\s+yet|not)\s+(?:tried|try)\s+anything"
    r"|(?:we\s+)?tried\s+nothing|nothing\s+(?:tried|yet)"
    r"|no\s+(?:fix|fallback)\s+(?:yet|on\s+our\s+side))",
    re.I,
)
# Calling one's own line to see what callers get is a test, not a workaround.
_TEST_CALL_RE = re.compile(
    r"\btried\s+(?:to\s+)?(?:call(?:ing)?|dial(?:l?ing)?|ring(?:ing)?|phon(?:e|ing))"
    r"\b",
    re.I,
)
_WORKAROUND_DONE_RE = re.compile(
    r"\b(?:work-?\s?arounds?\s*(?:is|was|:)|tried|by\s+hand|manually|for\s+now"
    r"|in\s+the\s+meantime|meanwhile|stop-?gap|rebooted|restarted|power[- ]cycled"
    r"|switched|forwarded\s+(?:our|the|all)\s+(?:calls|lines?)|working\s+off"
    r"|fall(?:ing)?\s*back\s+to|as\s+a\s+(?:work-?around|backup)"
    r"|(?:forwards?|forwarded|forwarding|passes|passing)\s+(?:them|it|those|the\s+"
    r"(?:texts|messages|summaries))\s+(?:on\s+)?to"
    r"|(?:we|i)(?:'ve|\s+have|\s+are|'re|'m|\s+am)?\s+(?:been\s+)?(?:checking"
    r"|calling\s+(?:back|the\s+(?:answering\s+)?service|the\s+call\s+provider)"
    r"|forwarding|using|reading|watching|copying|keeping\s+a|monitoring|routing"
    r"|logging)"
    # "Dana is going by the emails", "Ben is watching his email", "were
    # reading the emails" (we're), "we're telling clients to use the main line".
    r"|(?:is|are|'s|'re|were|am|'m)\s+(?:now\s+|just\s+)?(?:going\s+(?:by|off)"
    r"|working\s+(?:from|off)|relying\s+on|reading|watching|checking|monitoring)"
    r"\s+(?:the\s+|his\s+|her\s+|their\s+|our\s+|my\s+)?(?:e-?mails?|texts?"
    r"|inbox|call\s+log|portal|voice\s?mail)"
    r"|telling\s+(?:callers|clients|customers|patients|tenants|people)\s+to)\b",
    re.I,
)


def _workaround(sentences: Sequence[str]) -> str:
    for sentence in sentences:
        if sentence.rstrip().endswith("?"):
            continue
        if _WORKAROUND_NONE_RE.search(sentence):
            return sentence[:1000]
        done = [
            match
            for match in _WORKAROUND_DONE_RE.finditer(sentence)
            if not _TEST_CALL_RE.match(sentence, match.start())
        ]
        if done:
            return sentence[:1000]
    return ""


def _has_symptom(sentence: str) -> bool:
    # "Calls are not being dropped" has a negation but describes no symptom.
    if _NEGATION_CUE_RE.search(sentence):
        sentence = _NEGATED_FAILURE_RE.sub(",", sentence)
    return bool(_SYMPTOM_CUE_RE.search(sentence))


def _symptoms(text: _Text, workaround: str) -> str:
    chosen = [s for s in text.subject if _has_symptom(s)]
    for sentence in text.body:
        if len(chosen) >= 4:
            break
        if sentence == workaround or len(sentence) < 8:
            continue
        if _has_symptom(sentence) and not _WORKAROUND_NONE_RE.search(sentence):
            chosen.append(sentence)
    if not chosen and workaround and _SYMPTOM_CUE_RE.search(workaround):
        # A run-on message says everything in one sentence.
        chosen.append(workaround)
    return " ".join(chosen)[:2000]


# --- Facts -----------------------------------------------------------------------


def extract_facts(
    *,
    subject: str,
    body: str,
    received_at: dt.datetime,
    zone: str | dt.tzinfo | None,
    business_lines: Iterable[str] = (),
) -> Facts:
    """The five required facts from a message. Never raises.

    ``zone`` is the business's zone (a name or a tzinfo) when it is known:
    times written without a zone are read in it, and it settles a zone
    abbreviation with several meanings. ``business_lines`` are the
    business's phone lines (E.164). Relative words (tonight, yesterday,
    today, last night) are read against ``received_at`` in the time's zone.
    """
    received_at = _aware(received_at)
    text = _prepare(subject, body)
    default = _as_zone(zone)
    lines = set()
    for number in business_lines or ():
        parsed = parse_phone(getattr(number, "e164", number) or "")
        if parsed:
            lines.add(parsed[0])

    facts = Facts()
    mentions = _phone_mentions(text.all, lines, signature=False)
    mentions += [
        item
        for item in _phone_mentions(text.signature, lines, signature=True)
        if item[0].role == "line"
    ]
    facts.phones = [mention for mention, _ in mentions]
    line = next((m for m, _ in mentions if m.role == "line"), None)
    if line:
        facts.business_line = line.e164
        facts.business_line_extension = line.extension

    taken = lines | ({line.e164} if line else set())
    caller = next(
        (m for m, _ in mentions if m.role == "caller" and m.e164 not in taken), None
    ) or next((m for m, cue in mentions if cue == "" and m.e164 not in taken), None)
    call_id = _call_id(text.all)
    if caller and (caller.role == "caller" or not call_id):
        facts.example_call = caller.e164
        facts.example_call_extension = caller.extension
    elif call_id:
        facts.example_call = call_id

    candidates = _time_candidates(text.all, received_at=received_at, default=default)
    if candidates:
        best = max(candidates, key=lambda c: (c.score, -c.position))
        if best.resolve is not None:
            best.value, best.unclear = best.resolve()
        facts.started_at_text = best.text[:200]
        facts.started_at = best.value
        facts.started_at_unclear = best.unclear

    facts.workaround = _workaround(text.all)
    facts.symptoms = _symptoms(text, facts.workaround)
    return facts


def _call_id(sentences: Sequence[str]) -> str:
    for sentence in sentences:
        match = _CALL_ID_RE.search(sentence)
        if match:
            return match.group(0)
    for sentence in sentences:
        match = _OTHER_CALL_ID_RE.search(sentence)
        if match and not _PHONE_RE.fullmatch(match["id"]):
            return match["id"]
    return ""


def _aware(moment) -> dt.datetime:
    if not isinstance(moment, dt.datetime):
        logger.warning("triage: received_at is not a datetime; using now")
        return dt.datetime.now(UTC)
    if moment.tzinfo is None or moment.utcoffset() is None:
        # Limitation: a naive time is taken as UTC rather than refused, so a
        # caller's slip never stops intake.
        return moment.replace(tzinfo=UTC)
    return moment


# --- Triage ------------------------------------------------------------------------

# Limitation: the rules read English, with a few French, Spanish and German
# words ("lignes coupées", "MEZ"); a report written wholly in another
# language finds no rule and is left at P1 or P2 for an agent to read.

_NEGATED_BEFORE_RE = re.compile(
    r"(?:\b(?:no|not|without|non|never|nobody|no\s+one|nothing)\b|n't"
    r"|\b(?:is|are|was|were|do|does|did|has|have|had|ca|wo)nt)[\w\s-]{0,8}$",
    re.I,
)
_SAFETY_RE = re.compile(
    r"\b(?:gas\s+(?:smell|leak|odou?r)s?|smell(?:s|ed|ing)?\s+(?:of\s+)?gas"
    r"|carbon\s+monoxide|co\s+(?:alarm|detector)|fire(?!\s+off)|smoke"
    r"|flood(?:ed|ing|s)?"
    r"(?!\s+with)|burst\s+pipes?|sewage|sparking|electrical\s+burning"
    r"|medical\s+emergency|chest\s+pain|not\s+breathing|unconscious|bleeding"
    r"|overdose|seizure|injur(?:y|ed|ies)|suicid\w*|break-?in|intruder"
    # Said in so many words, or a bite: the field guide's "safety risk".
    r"|safety\s+(?:risk|issue|hazard|concern|problem|emergency)|unsafe"
    r"|danger(?:ous)?|life[-\s]threatening|electrocut\w*|dog\s+bites?"
    r"|(?:dog|animal)\s+(?:\w+\s+)?bit|bitten)\b",
    re.I,
)
# A few words or a phone number between a noun and what it does ("our line
# (617) 555-0142 stopped getting answered").
_GAP = r"(?:\s+[\w()+.'-]+){0,4}?"
_NOT = r"(?:not|n't|nt|no\s+longer)"
_INTAKE_DOWN_RE = re.compile(
    r"\b(?:all\s+(?:of\s+)?(?:our\s+|the\s+|my\s+|their\s+)?(?:phone\s+)?lines?\s+"
    r"(?:are\s+|went\s+|have\s+gone\s+)?(?:dead|down)"
    rf"|(?:lines?|phones?|numbers?){_GAP}\s+(?:(?:is|are|was|were|went|has\s+gone"
    r"|have\s+gone|has\s+been|have\s+been)\s+)?(?:completely\s+|totally\s+|just\s+)?"
    r"(?:dead|down|disconnected|out\s+of\s+service|(?:not|no\s+longer)\s+in\s+service)"
    rf"|(?:lines?|phones?|numbers?){_GAP}\s+(?:is|are|was|were)?\s*{_NOT}\s+"
    r"(?:being\s+)?(?:working|ringing|answer(?:ing|ed)|connecting|picked\s+up)"
    rf"|(?:lines?|calls?|numbers?){_GAP}\s+(?:just\s+)?stopped\s+(?:getting\s+"
    r"|being\s+)?(?:answer\w*|ringing|connecting|(?:coming|going|getting)\s+through)"
    rf"|phones?{_GAP}\s+(?:just\s+)?stopped\s+ringing"
    r"|(?:fast\s+)?busy\s+signal|callers?\s+(?:hear|get)s?\s+(?:a\s+)?(?:fast\s+)?busy"
    r"|callers?\s+(?:only\s+|just\s+)?(?:hear|get)s?\s+(?:silence|nothing|dead\s+air)"
    rf"|(?:calls?|callers?){_GAP}\s+(?:are|is|were|was)?\s*{_NOT}\s+"
    r"(?:being\s+)?"
    r"(?:answered|connect\w*|(?:going|getting|coming)\s+through|picked\s+up)"
    rf"|(?:calls?|lines?){_GAP}\s+(?:go|goes|went|going|are\s+going)\s+unanswered"
    r"|(?:no\s+one|nobody)\s+(?:is\s+)?(?:answer(?:ing|s|ed)|pick(?:ing|s|ed)\s+up)"
    r"|(?:can(?:no|')?t|cannot|couldn'?t)\s+get\s+through"
    r"|call\s+intake\s+(?:is\s+)?(?:down|failing|dead)"
    r"|rings?\s+(?:out|forever|and\s+rings)|ring(?:s|ing)?\s+(?:with\s+)?no\s+answer"
    r"|dead\s+air|(?:go|goes|went|going)\s+(?:straight\s+|directly\s+|right\s+)?to\s+"
    r"voice\s?mail|not\s+receiving\s+(?:any\s+)?calls|(?:no|zero)\s+calls\s+"
    r"(?:are\s+|have\s+)?(?:come|came|coming|got|gotten|get|getting)\s+(?:in|through)"
    r"|no\s+calls\s+since|(?:lines?|phones?)\s+(?:just\s+)?rings?(?=\s*(?:[.;,!]|$))"
    r"|lignes?\s+coup[ée]es?"
    rf"|(?:calls?|callers?){_GAP}\s+(?:get|gets|are|were|is|being|keep)?\s*"
    r"(?:\w+\s+)?(?:dropped|cut\s+off|disconnected|hung\s+up\s+on))",
    re.I,
)
_SMS_NOUN = r"(?:text\s+(?:alerts?|messages?)|texts?|txts?|sms|text(?:ing|ed))"
_NOTIFY_NOUN = (
    rf"(?:(?:call\s+)?summar(?:y|ies)|{_SMS_NOUN}|alerts?|notifications?|pages?"
    r"|paged|emails?|e-mails?)"
)
# Negations as people type them, apostrophe or not ("arent", "didnt").
_NEGATION = (
    r"(?:\bnot|\bnever|\bno\s+longer|\bstopped|\bnobody|\bno\s+one|n't"
    r"|\b(?:are|is|was|were|do|does|did|have|has|had|ca|wo)nt\b)"
)
_NOTIFY_FAIL_RES = [
    re.compile(
        rf"{_NEGATION}\s+(?:\w+\s+){{0,4}}?"
        r"(?:receiv\w*|get|getting|got|gotten|arriv\w*|comm?(?:e|es|ing)|came"
        r"|sen[dt]\w*|deliver\w*|paged|pag(?:e|ing)|alert(?:ed|ing)|notif\w*"
        r"|text(?:ed|ing)|email(?:ed|ing)|show(?:s|ing|n)?\s+up|reach\w*"
        r"|go(?:es|ing)?\s+out|went\s+out|work\w*|produc\w*|generat\w*)\b",
        re.I,
    ),
    re.compile(
        rf"\b(?:no|not\s+(?:a\s+)?single|not\s+one|zero)\s+{_NOTIFY_NOUN}\b"
        # "Nothing since 11 PM, texts or emails."
        r"|\b(?:nothing|none)\s+(?:at\s+all\s+)?(?:since|after|from|overnight|tonight"
        rf"|all\s+night)\b[^.;]{{0,30}}?\b{_NOTIFY_NOUN}\b",
        re.I,
    ),
    # "Summaries are missing the dashes" lacks something; it is not missing.
    re.compile(
        rf"\b{_NOTIFY_NOUN}\s+(?:\w+\s+){{0,3}}?"
        r"(?:(?:are|is|were|was|have|has|keep)\s+)?"
        r"(?:fail\w*|stopped|missing(?!\s+(?:the|a|an|their|its|his|her|some|any|all"
        r"|our|your)\b)|bounc\w*|undeliver\w*|blocked|(?:land\w*|go(?:es|ing)?"
        r"|end(?:s|ing)?\s+up)\s+in\s+(?:the\s+|our\s+|my\s+)?(?:spam|junk))\b",
        re.I,
    ),
]
_NOTIFY_NOUN_RE = re.compile(rf"\b{_NOTIFY_NOUN}\b", re.I)
# "The 11:20 PM call never reached me": on-call was not told of a call.
_CALL_NOT_REACHED_RE = re.compile(
    rf"\bcalls?\b[^.;]{{0,40}}?{_NEGATION}\s+(?:\w+\s+)?(?:reach\w*|get\s+to"
    r"|make\s+it\s+to|c[oa]me\s+through\s+to)\s+(?:me|us|him|her|them|on-?call"
    r"|our\s+on-?call)\b",
    re.I,
)
# Summaries delivered to someone other than the person on call.
_MISROUTED_RE = re.compile(
    rf"\b{_NOTIFY_NOUN}\s+(?:are\s+|is\s+|were\s+|was\s+|keep\s+)?(?:going|go|goes"
    r"|went|sent|being\s+sent|delivered)\s+to\s+(?:\w+\s+){1,3}?instead\s+of\b",
    re.I,
)
_CLAUSE_BREAK_RE = re.compile(r"[,;]|\bbut\b", re.I)
_SMS_NOUN_RE = re.compile(rf"\b{_SMS_NOUN}\b", re.I)
_EMAIL_NOUN_RE = re.compile(r"\b(?:emails?|e-mails?)\b", re.I)
_GENERIC_NOTIFY_RE = re.compile(
    r"\b(?:summar(?:y|ies)|alerts?|notifications?|pages?|paged)\b", re.I
)
_CHANNEL = r"(?:emails?|e-mails?|texts?|txts?|sms)"
_CHANNEL_WORKS_RE = re.compile(
    rf"\b(?P<noun>{_CHANNEL})\b(?:\s+[\w']+){{0,5}}?\s+"
    r"(?:(?:are|is|were|was|do|does|did|have|has)\s+)?(?:still\s+)?"
    r"(?:coming\s+(?:through|in)|arriv(?:e|es|ed|ing)|work(?:s|ed|ing)|fine|ok(?:ay)?"
    r"|go(?:es|ing)\s+out|went\s+out|getting\s+through|got\s+through|reached"
    r"|com(?:e|es)\s+(?:through|in)|came\s+(?:through|in)"
    r"|received|deliver(?:ed|ing)|on\s+time"
    r"|still\s+(?:do|does|did)(?=\s*(?:[.;,!)]|$)))"
    r"\b"
    rf"|\bworking\s+off\s+(?:of\s+)?(?:the\s+)?(?P<noun2>{_CHANNEL})\b",
    re.I,
)
# The verb first: "I'm getting the emails", "getting everything by email",
# "came only by email". Negation is looked for just before the match.
_CHANNEL_RECEIVED_RE = re.compile(
    r"\b(?:getting|get|got|receiving|receive|received)\s+(?:\w+\s+){0,3}?"
    rf"(?:by|via|through|as)\s+(?:an?\s+)?(?P<noun>{_CHANNEL})\b"
    r"|\b(?:getting|get|got|receiving|received)\s+(?:the|our|my|all\s+the)\s+"
    rf"(?P<noun2>{_CHANNEL})\b"
    r"|\b(?:came|comes|arrived|arrives)\s+(?:only\s+|just\s+)?(?:by|via|as)\s+"
    rf"(?:an?\s+)?(?P<noun3>{_CHANNEL})\b",
    re.I,
)
_WORKS_CLAUSE_BREAK_RE = re.compile(
    r"[,;:]|\s-+\s|\b(?:but|and|though|although|while|whereas|so|yet)\b", re.I
)
# "Fallback works", "the backup is working" with no channel named: the
# other channel than the failing one.
_FALLBACK_WORKS_RE = re.compile(
    r"\b(?:fall-?\s?back|back-?\s?up)(?:\s+[\w']+){0,3}?\s+(?:(?:is|are|was|were"
    r"|has\s+been|have\s+been|do|does)\s+)?(?:still\s+)?(?:works?|working|fine"
    r"|ok(?:ay)?|arriv\w*|com(?:e|es|ing)\s+through|came\s+through|got\s+through"
    r"|goes\s+out|went\s+out|delivered)\b",
    re.I,
)
_NEGATION_RE = re.compile(
    r"\b(?:not|never|no)\b|n't\b|\b(?:are|is|was|were|do|does|did|have|has|had|ca"
    r"|wo)nt\b",
    re.I,
)
_PARTIAL_RE = re.compile(
    r"\b(?:(?:about\s+|roughly\s+|around\s+|nearly\s+)?half\s+(?:of\s+)?(?:them|the"
    r"\s+\w+|our\s+\w+|the\s+time)|some\s+(?:of\s+)?(?:the\s+|our\s+)?(?:call\s+)?"
    r"(?:calls|texts|callers|messages|summaries|records|lines|alerts)"
    r"|intermittent(?:ly)?|sometimes|sporadic(?:ally)?|on\s+and\s+off|off\s+and\s+on"
    r"|not\s+all|a\s+few\s+(?:calls|texts|of)|occasional(?:ly)?|random(?:ly)?"
    r"|hit\s+or\s+miss|only\s+(?:some|one|a\s+few)"
    r"|works?\s+for\s+(?:some|one|a\s+few|part)\b(?:\s+[\w'-]+){0,5}?\s+but\s+not"
    r"|but\s+not\s+(?:for\s+)?(?:the\s+)?others?"
    r"|\d{1,3}\s+(?:in|out\s+of|of\s+(?:the\s+)?(?:every\s+)?)\s*\d{1,4}"
    r"|(?:a|one)\s+(?:third|quarter)|two\s+thirds|\d{1,2}\s?%)(?!\w)",
    re.I,
)
# Something else still works: another line, the other calls, the rest.
_OTHER_FINE_RE = re.compile(
    r"\b(?:others?|first|second|main|rest\s+of\s+(?:our|the)|the\s+rest)"
    r"(?:\s+[\w()+.-]+){0,3}?\s+(?:(?:seems?|is|are|were|was)\s+(?:\w+\s+)?"
    r"(?:fine|ok(?:ay)?|normal(?:ly)?|working)|works?(?:\s+fine)?"
    r"|(?:get|got|go|went|come|came)\s+through(?:\s+fine)?|arrived"
    r"|(?:did|do)(?=\s*(?:[.;,!)]|$)))",
    re.I,
)
_MULTI_CUSTOMER_RE = re.compile(
    r"\b(?:(?:multiple|several|many|other|all\s+(?:of\s+)?your)\s+(?:businesses"
    r"|companies|offices|practices|accounts|customers\s+of\s+yours)"
    r"|not\s+(?:just|only)\s+us|everyone\s+(?:using|on)\s+(?:your|the)\s+"
    r"(?:service|platform)"
    # "two other electricians on your service", "a few plumbers using you"
    r"|(?:two|three|four|five|several|many|multiple|a\s+few|\d+)\s+(?:other\s+)?"
    r"(?:[a-z]+\s+){0,2}?[a-z]+s\s+(?:on|using|who\s+use|that\s+use|with)\s+"
    r"(?:your|the\s+same)\s+(?:answering\s+)?(?:service|platform|system)"
    r"|other\s+(?:[a-z]+\s+){0,3}?(?:[a-z]+\s+){0,4}?(?:see|sees|seeing|have|having"
    r"|report\w*|get|getting)\s+the\s+same\s+(?:thing|problems?|issues?|delays?"
    r"|errors?|outage))\b",
    re.I,
)
_PRIVACY_RE = re.compile(
    r"\b(?:(?:another|other|a\s+different|the\s+wrong)\s+(?:company|business|clinic"
    r"|office|practice|account|customer)(?:'s|s'|s's)(?:\s+\w+)?\s+(?:calls?|data"
    r"|records?|messages?|summar\w+|info\w*|patients?|customers?)"
    r"|(?:calls?|records?|data|summar\w+|messages?|patients?)\s+(?:that\s+)?"
    r"(?:are\s+|were\s+)?(?:for|from|of|(?:meant|intended)\s+for"
    r"|belong(?:s|ing)?\s+to)\s+(?:another|a\s+different|the\s+wrong|other)\s+"
    r"(?:\w+\s+)?(?:company|companies|business(?:es)?|clinics?|offices?|practices?"
    r"|accounts?|customers?)"
    r"|someone\s+else'?s\s+(?:calls?|data|records?|messages?)"
    r"|not\s+our\s+(?:calls?|data|records?|customers?|patients?)"
    r"|(?:summar\w+|calls?|records?|data|messages?|patients?)\b[^.;]{0,40}?"
    r"(?:is\s*n[o']t|are\s*n[o']t|not)\s+ours\b"
    r"|privacy|hipaa|data\s+(?:leak|breach|exposure)|leak(?:ed|ing)\s+\w+"
    # Callers' details sent to a person who is not the business.
    r"|belongs?\s+to\s+someone\s+(?:else|outside)|someone\s+outside\s+(?:the|our)"
    r"\s+\w+|(?:sent|went|delivered|going|goes)\s+to\s+(?:the\s+|a\s+)?wrong\s+"
    r"(?:person|people|number|recipient|phone|address)"
    r"|(?:data|records?|summaries)(?:\s+[\w.,-]+){0,5}?\s+(?:were\s+|was\s+|got\s+"
    r"|have\s+been\s+|has\s+been\s+|are\s+(?:just\s+)?|is\s+(?:just\s+)?)?"
    r"(?:deleted|wiped|erased|disappeared|gone|vanished)"
    r"|lost\s+(?:all\s+|our\s+|the\s+)?(?:data|records|call\s+records))\b",
    re.I,
)
_AIRTABLE_RE = re.compile(r"\b(?:airtable|calls\s+table)\b", re.I)
_FAILURE_CUE_RE = re.compile(
    r"(?:\b(?:not|never|no\s+longer|stopped|fail(?:s|ed|ing|ure|ures)?|broken|down"
    r"|missing|errors?|dead|cannot|outages?|nothing|nobody|no\s+one|dropped"
    r"|no\s+(?:new\s+)?(?:rows|records|entries|calls|texts|summaries))\b|n't\b)",
    re.I,
)
_DELAY_RE = re.compile(
    r"\b(?:slow\w*|delay\w*|late|lag\w*|took\s+(?:about\s+|around\s+|over\s+)?\d+\s+"
    r"(?:minutes|mins|hours)|\d+(?:\s*-\s*\d+)?\s+(?:minutes|mins|hours)\s+"
    r"(?:after|behind))\b",
    re.I,
)
# Deliveries that were slow or retried but all got there in the end: the
# field guide's "non-critical webhook delay with retries succeeding" (P2).
_RETRIES_OK_RE = re.compile(
    r"\bretr(?:y|ies)\s+(?:\w+\s+){0,3}?(?:succeed\w*|work\w*|go(?:es)?\s+through"
    r"|went\s+through|get\s+through)\b"
    r"|\b(?:delivered|arrived|came\s+through|went\s+through)\s+(?:in\s+the\s+end"
    r"|eventually)\b|\beventually\s+(?:got\s+)?(?:delivered|arrived|came\s+through"
    r"|went\s+through)\b",
    re.I,
)
_NO_CALLS_SHOWN_RE = re.compile(
    r"\b(?:no|missing|any|none\s+of\s+the)\s+(?:new\s+)?(?:calls|records)\b", re.I
)
# Callers kept waiting: intake degraded, not down.
_INTAKE_SLOW_RE = re.compile(
    r"\b(?:(?:stuck|left|kept|waiting|wait|sit(?:ting)?)\s+on\s+hold|on\s+hold\s+for"
    r"|long\s+(?:hold|wait)(?:\s+times?)?|(?:takes?|took|taking)\s+(?:\w+\s+){0,2}?"
    r"\d+(?:\s*-\s*\d+)?\s+(?:rings|minutes|mins)\s+(?:before|to\s+(?:be\s+)?"
    r"answer\w*))",
    re.I,
)
# The call and its summary went as they should ("reached Dana within a
# minute", "your agent handled it well").
_ALL_WELL_RE = re.compile(
    r"\b(?:handled\s+(?:it|that|this|the\s+call)\s+(?:really\s+|very\s+)?well"
    r"|reached\s+(?:\w+\s+){0,3}?(?:within|right\s+away|immediately|in\s+time)"
    r"|(?:worked|went)\s+(?:fine|well|great|perfectly)|just\s+wanted\s+to\s+(?:say"
    r"|thank)|thank\s+you\s+for|great\s+job|kudos)\b",
    re.I,
)
_WEBHOOK_RE = re.compile(r"\b(?:webhooks?|retr(?:y|ies))\b", re.I)
_COSMETIC_RE = re.compile(
    r"\b(?:format\w*|spacing|typos?|cosmetic|looks?\s+(?:off|weird|wrong|odd)"
    r"|hard\s+to\s+read|fonts?|layout|capitali[sz]\w*|misspel\w*|alignment"
    r"|run\s+together)\b",
    re.I,
)
_NOT_URGENT_RE = re.compile(
    r"\b(?:not\s+(?:urgent|critical|a\s+big\s+deal|an\s+emergency)|no\s+(?:rush|hurry)"
    r"|no\s+harm\s+done|no\s+impact|low\s+priority|when\s+you\s+(?:get\s+a\s+chance"
    r"|have\s+time)|just\s+(?:fyi|a\s+heads\s+up)|all\s+(?:the\s+)?information\s+is"
    r"\s+there|data\s+(?:is\s+|are\s+)?(?:still\s+)?(?:correct|right|accurate)"
    r"|non-?critical"
    r"|no\s+action\s+needed)\b",
    re.I,
)
_URGENT_RE = re.compile(
    r"\b(?:urgent(?:ly)?|asap|emergency(?!\s+(?:line|number|contact)))\b", re.I
)
_COMPONENT_NOUNS = [
    ("portal", re.compile(r"\b(?:portal|dashboard|status\s+page)\b", re.I)),
    ("airtable", _AIRTABLE_RE),
    ("sms", _SMS_NOUN_RE),
    ("email", _EMAIL_NOUN_RE),
    ("summaries", _GENERIC_NOTIFY_RE),
    (
        "call_intake",
        re.compile(r"\b(?:lines?|phones?|intake|answering\s+service|ringing)\b", re.I),
    ),
]


# Words that must be in a message for the matching pattern to be tried.
_SAFETY_WORDS = (
    "gas",
    "fire",
    "smoke",
    "flood",
    "carbon",
    "co ",
    "pipe",
    "sewage",
    "spark",
    "burning",
    "medical",
    "chest",
    "breath",
    "unconscious",
    "bleeding",
    "overdose",
    "seizure",
    "injur",
    "suicid",
    "break",
    "intruder",
    "safety",
    "unsafe",
    "danger",
    "threat",
    "electrocut",
    "bit",
)
_PRIVACY_WORDS = (
    "other",
    "different",
    "wrong",
    "someone",
    "ours",
    "not our",
    "privacy",
    "hipaa",
    "data",
    "leak",
    "deleted",
    "wiped",
    "erased",
    "disappeared",
    "gone",
    "lost",
    "vanished",
)
_MULTI_WORDS = (
    "multiple",
    "several",
    "many",
    "other",
    "all of your",
    "all your",
    "not just",
    "not only",
    "everyone",
)
_INTAKE_WORDS = (
    "dead",
    "down",
    "disconnected",
    "out of service",
    "not",
    "n't",
    "busy",
    "nobody",
    "no one",
    "get through",
    "intake",
    "ring",
    " air",
    "receiving calls",
    "no calls",
    "coup",
    "dropped",
    "cut off",
    "hung up",
    "stopped",
    "unanswered",
    "voice",
    "silence",
    "nothing",
    "cannot",
    "nt ",
    "no longer",
)
_NOTIFY_WORDS = (
    "summar",
    "text",
    "txt",
    "sms",
    "alert",
    "notif",
    "page",
    "paging",
    "mail",
    "reach",
)
_AIRTABLE_WORDS = ("airtable", "calls table")
_COSMETIC_WORDS = (
    "format",
    "spacing",
    "typo",
    "cosmetic",
    "look",
    "hard to read",
    "font",
    "layout",
    "capitali",
    "misspel",
    "alignment",
    "run together",
)
_NOT_URGENT_WORDS = (
    "action",
    "urgent",
    "critical",
    "big deal",
    "emergency",
    "rush",
    "hurry",
    "harm",
    "impact",
    "priority",
    "when you",
    "fyi",
    "heads up",
    "information",
    "correct",
)
_URGENT_WORDS = ("urgent", "asap", "emergency")
_DELAY_WORDS = ("slow", "delay", "late", "lag", "took", "minutes", "mins", "hours")
_NEGATION_WORDS = (
    "not",
    "never",
    "no longer",
    "stopped",
    "nobody",
    "no one",
    "n't",
    "nt ",
)
_PORTAL_NOUN_RE = re.compile(r"\b(?:portal|status|dashboard)\b", re.I)


def _any_in(text: str, words: tuple[str, ...]) -> bool:
    return any(word in text for word in words)


@dataclass
class _Signals:
    p0: list[str] = field(default_factory=list)
    p1: list[str] = field(default_factory=list)
    p2: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)


def _quote(match: re.Match) -> str:
    return f"'{_excerpt(match.group(0))}'"


def _clause(text: str, which: int) -> str:
    """The first (0) or last (-1) clause of ``text``."""
    return _CLAUSE_BREAK_RE.split(text)[which]


def _not_negated(sentence: str, match: re.Match) -> bool:
    return not _NEGATED_BEFORE_RE.search(
        sentence[max(0, match.start() - 14) : match.start()]
    )


def _notification_signals(
    sentences: Sequence[str],
    facts: Facts,
    received_at: dt.datetime,
    signals: _Signals,
    said: Sequence[str] = (),
) -> None:
    """Notification failures from ``sentences`` (the present failures);
    working channels from ``said`` (the message as written), since "emails
    are working again" is taken out of the former as a recovery."""
    failing: set[str] = set()
    working: set[str] = set()
    evidence = ""
    partial = ""
    for sentence in said or sentences:
        for part in _WORKS_CLAUSE_BREAK_RE.split(sentence):
            for match in _CHANNEL_WORKS_RE.finditer(part):
                if _NEGATION_RE.search(match.group(0)):
                    continue
                noun = (match["noun"] or match["noun2"] or "").lower()
                working.add("email" if "mail" in noun else "sms")
            fallback = _FALLBACK_WORKS_RE.search(part)
            if fallback and not _NEGATION_RE.search(fallback.group(0)):
                working.add("fallback")
        for match in _CHANNEL_RECEIVED_RE.finditer(sentence):
            before = sentence[max(0, match.start() - 16) : match.start()]
            if _NEGATION_RE.search(before) or _NEGATION_RE.search(match.group(0)):
                continue
            noun = (match["noun"] or match["noun2"] or match["noun3"] or "").lower()
            working.add("email" if "mail" in noun else "sms")
    for sentence in sentences:
        reached = _CALL_NOT_REACHED_RE.search(sentence)
        if reached:
            failing.add("summaries")
            evidence = evidence or _excerpt(reached.group(0), 70)
        if not _NOTIFY_NOUN_RE.search(sentence):
            continue
        # "Only getting half the texts" says the failure is partial, even
        # when the failing words are in the next sentence.
        partial_match = _PARTIAL_RE.search(sentence)
        if partial_match and not partial:
            partial = partial_match.group(0)
        negated = _any_in(sentence.lower(), _NEGATION_WORDS)
        for index, pattern in enumerate(_NOTIFY_FAIL_RES):
            if index == 0 and not negated:
                continue
            for match in pattern.finditer(sentence):
                scope = _clause(sentence[match.start() : match.end() + 40], 0)
                if _NOTIFY_NOUN_RE.search(match.group(0)):
                    # "Nothing since 11 PM, texts or emails" names its nouns
                    # past a comma.
                    scope = match.group(0)
                elif not _NOTIFY_NOUN_RE.search(scope):
                    before = sentence[max(0, match.start() - 30) : match.start()]
                    scope = _clause(before, -1) + scope
                channels = set()
                if _SMS_NOUN_RE.search(scope):
                    channels.add("sms")
                if _EMAIL_NOUN_RE.search(scope):
                    channels.add("email")
                if _GENERIC_NOTIFY_RE.search(_SMS_NOUN_RE.sub(" ", scope)):
                    channels.add("summaries")
                if not channels:
                    continue
                failing |= channels
                evidence = evidence or _excerpt(
                    match.group(0) + sentence[match.end() :], 70
                )
    if not failing:
        return
    if "fallback" in working:
        # An unnamed fallback is the channel that is not failing.
        working.discard("fallback")
        if not {"sms", "email"} <= failing:
            working.add("email" if "sms" in failing else "sms")
    working -= failing
    concrete = failing - {"summaries"}
    if len(concrete) == 1 and (working or "summaries" not in failing):
        signals.components.append(next(iter(concrete)))
    else:
        signals.components.append("summaries")
    if working:
        names = {"sms": "SMS", "email": "email"}
        failed = ", ".join(names.get(c, "summaries") for c in sorted(failing))
        fallback = " and ".join(names[c] for c in sorted(working))
        signals.p1.append(
            f"partial failure, fallback works: {failed} failing but {fallback} "
            "still arrives"
        )
        return
    if not partial:
        # "The other calls tonight did": the failure is not total.
        partial = next(
            (m.group(0) for s in sentences if (m := _OTHER_FINE_RE.search(s))), ""
        )
    if partial:
        signals.p1.append(f"intermittent or partial failure: '{_excerpt(partial)}'")
        return
    if facts.started_at is not None and not facts.started_at_unclear:
        quiet = received_at - facts.started_at
        if quiet <= NO_NOTIFICATIONS_THRESHOLD:
            signals.p1.append(
                f"notifications failing for under 10 minutes so far: '{evidence}'"
            )
            return
        minutes = int(quiet.total_seconds() // 60)
        signals.p0.append(
            "no summaries/notifications for more than 10 minutes "
            f"(about {minutes} minutes by the time of the message): '{evidence}'"
        )
        return
    signals.p0.append(
        f"on-call receives no summaries/notifications (start time not given): "
        f"'{evidence}'"
    )


def _signals(text: _Text, facts: Facts, received_at: dt.datetime) -> _Signals:
    signals = _Signals()
    said = text.all
    sentences = text.present or said
    low = text.lower
    # Each pattern runs only when one of its words is in the message: most
    # messages carry few of them, and the patterns are the slow part.
    safety = _any_in(low, _SAFETY_WORDS)
    privacy = _any_in(low, _PRIVACY_WORDS)
    multi = _any_in(low, _MULTI_WORDS)
    intake = _any_in(low, _INTAKE_WORDS)
    failure_sentences: list[str] = []
    intake_hits: list[tuple[str, re.Match]] = []
    safety_hits: list[str] = []

    if safety:
        for sentence in said:
            for match in _SAFETY_RE.finditer(sentence):
                if _not_negated(sentence, match):
                    safety_hits.append(f"safety risk: {_quote(match)}")
                    break
    for sentence in sentences:
        match = _PRIVACY_RE.search(sentence) if privacy else None
        if match:
            signals.p0.append(f"data loss or privacy issue: {_quote(match)}")
            signals.components.append(
                "airtable" if _any_in(low, _AIRTABLE_WORDS) else "summaries"
            )
        match = _MULTI_CUSTOMER_RE.search(sentence) if multi else None
        if match:
            signals.p0.append(f"multiple customers affected: {_quote(match)}")
        match = _INTAKE_DOWN_RE.search(sentence) if intake else None
        # "Texts to my number stopped coming through" is about notifications.
        if match and not _NOTIFY_NOUN_RE.search(_clause(sentence[: match.start()], -1)):
            intake_hits.append((sentence, match))
        if _FAILURE_CUE_RE.search(sentence):
            failure_sentences.append(sentence)

    if intake_hits:
        # Part of the calls failing anywhere in the message ("some callers
        # get cut off", "the main line works") makes it a partial failure.
        partial = next(
            (m for s, _ in intake_hits if (m := _PARTIAL_RE.search(s))), None
        ) or next((m for s in sentences if (m := _OTHER_FINE_RE.search(s))), None)
        match = intake_hits[0][1]
        if partial:
            signals.p1.append(
                f"call intake failing for part of the calls: {_quote(match)}, "
                f"{_quote(partial)}"
            )
        else:
            signals.p0.append(f"call intake down: {_quote(match)}")
        signals.components.insert(0, "call_intake")
    elif _any_in(low, ("hold", "wait", "rings")):
        slow = next((m for s in sentences if (m := _INTAKE_SLOW_RE.search(s))), None)
        if slow:
            signals.p1.append(f"call intake slow: {_quote(slow)}")
            signals.components.insert(0, "call_intake")

    if _any_in(low, _NOTIFY_WORDS):
        _notification_signals(sentences, facts, received_at, signals, said)
    if "instead" in low:
        misrouted = next((m for s in sentences if (m := _MISROUTED_RE.search(s))), None)
        if misrouted:
            signals.p1.append(
                f"notifications going to the wrong on-call person: {_quote(misrouted)}"
            )
            signals.components.append("summaries")

    if _any_in(low, _AIRTABLE_WORDS):
        for sentence in failure_sentences:
            if _AIRTABLE_RE.search(sentence) and not _PRIVACY_RE.search(sentence):
                partial = _PARTIAL_RE.search(sentence)
                signals.p1.append(
                    "Airtable writes failing"
                    + (f" intermittently: {_quote(partial)}" if partial else "")
                )
                # Records and notifications both missing: the pipeline
                # after the call, not one channel.
                notified = {"sms", "email", "summaries"} & set(signals.components)
                signals.components = [
                    "summaries" if c in notified else c for c in signals.components
                ]
                signals.components.append("airtable")
                break

    whole = " ".join(said)
    cosmetic = _COSMETIC_RE.search(whole) if _any_in(low, _COSMETIC_WORDS) else None
    not_urgent = (
        _NOT_URGENT_RE.search(whole) if _any_in(low, _NOT_URGENT_WORDS) else None
    )
    if cosmetic:
        signals.p2.append(f"cosmetic issue: {_quote(cosmetic)}")
    if not_urgent:
        signals.p2.append(f"customer says it is not urgent: {_quote(not_urgent)}")
    retries_ok = (
        _RETRIES_OK_RE.search(" ".join(sentences))
        if _any_in(low, ("retr", "eventually", "in the end"))
        and _WEBHOOK_RE.search(low)
        else None
    )
    if retries_ok:
        signals.p2.append(
            f"non-critical delay, retries succeeding: {_quote(retries_ok)}"
        )
    elif _any_in(low, _DELAY_WORDS):
        for sentence in sentences:
            delay = _DELAY_RE.search(sentence)
            if delay and _PORTAL_NOUN_RE.search(sentence):
                signals.p2.append(f"slow portal or status update: {_quote(delay)}")
                signals.components.append("portal")
                break
            if delay and _NOTIFY_NOUN_RE.search(sentence):
                signals.p1.append(f"notifications delayed: {_quote(delay)}")
                signals.components.append("summaries")
                break

    if _any_in(low, _URGENT_WORDS):
        for sentence in said:
            match = _URGENT_RE.search(sentence)
            if match and _not_negated(sentence, match):
                signals.p1.append(f"customer marked it urgent: {_quote(match)}")
                break

    if safety_hits:
        all_well = _ALL_WELL_RE.search(whole)
        if all_well and not (failure_sentences or signals.p0 or signals.p1):
            # A caller's emergency that reached on-call in time is a story,
            # not an outage.
            signals.p2.append(
                f"safety words in a report of a call handled well: {_quote(all_well)}"
            )
        else:
            signals.p0[:0] = safety_hits[:1]

    # A portal that shows no calls may be an intake outage: not portal-only.
    portal_only = failure_sentences and all(
        _PORTAL_NOUN_RE.search(sentence)
        and not _NO_CALLS_SHOWN_RE.search(sentence)
        and not any(
            pattern.search(sentence)
            for component, pattern in _COMPONENT_NOUNS
            if component not in ("portal", "call_intake")
        )
        for sentence in failure_sentences
    )
    if portal_only and not (signals.p0 or signals.p1):
        signals.p2.append(
            "portal problem, calls and notifications not reported affected: "
            f"'{_excerpt(failure_sentences[0], 70)}'"
        )
        signals.components.append("portal")
    elif not (signals.p0 or signals.p1 or cosmetic or not_urgent):
        for sentence in failure_sentences:
            for component, pattern in _COMPONENT_NOUNS:
                if component != "portal" and pattern.search(sentence):
                    signals.p1.append(
                        f"failure reported, not shown to be cosmetic: "
                        f"'{_excerpt(sentence, 70)}'"
                    )
                    signals.components.append(component)
                    break
            if signals.p1:
                break
        if not signals.p1 and failure_sentences:
            signals.p1.append(
                "failure reported, part unclear: "
                f"'{_excerpt(failure_sentences[0], 70)}'"
            )
    if not (signals.p0 or signals.p1):
        # Say why failure words were not read as a failure.
        over = next((s for s, now in zip(said, sentences, strict=True) if s != now), "")
        if over:
            signals.p2.append(
                f"failure words negated or said to be over: '{_excerpt(over, 70)}'"
            )
    return signals


def _component(signals: _Signals, sentences: Sequence[str]) -> str:
    if signals.components:
        return signals.components[0]
    for sentence in sentences:
        for component, pattern in _COMPONENT_NOUNS:
            if pattern.search(sentence):
                return component
    return ""


def _one_per_kind(reasons: list[str]) -> list[str]:
    """The first reason of each kind (the words before the colon)."""
    seen: dict[str, str] = {}
    for reason in reasons:
        seen.setdefault(reason.partition(":")[0], reason)
    return list(seen.values())


def triage(
    *,
    subject: str,
    body: str,
    facts: Facts,
    business: Business | None,
    received_at: dt.datetime,
    matching_reports: int = 0,
) -> TriageResult:
    """Priority with the reasons an agent reads, escalation tags, component.

    P0: safety risk, call intake down, no summaries/notifications for more
    than 10 minutes, several customers affected, data loss or privacy.
    P1: intermittent or partial failures, a fallback that works, Airtable
    failures, delays, callers kept on hold, a reported failure not shown to
    be cosmetic, or a customer marking it urgent. P2: the rest (cosmetic,
    non-urgent, a portal problem with calls and notifications unaffected,
    a delay whose retries succeeded, safety words in a report of a call
    that reached on-call in time). A reply's "Re:" subject names the old
    problem and is not read when the body says that problem is over.
    ``matching_reports`` counts recent reports on the same component,
    this one included. Never raises.
    """
    received_at = _aware(received_at)
    text = _prepare(subject, body)
    facts = facts if isinstance(facts, Facts) else Facts()
    signals = _signals(text, facts, received_at)

    if signals.p0:
        priority, reasons = "P0", _one_per_kind(signals.p0)
    elif signals.p1:
        priority, reasons = "P1", _one_per_kind(signals.p1)
    else:
        priority = "P2"
        reasons = signals.p2 or [
            "no outage, safety risk or failure found in the message; an agent "
            "should confirm"
        ]

    escalations = []
    if business is not None:
        if getattr(business, "high_value", False):
            escalations.append("high_value")
        try:
            if not business.is_open_at(received_at):
                escalations.append("after_hours")
        except (ZoneInfoNotFoundError, ValueError, TypeError, AttributeError):
            logger.warning("triage: business id=%s has unusable hours", business.pk)
    if matching_reports > MANY_REPORTS_THRESHOLD:
        escalations.append("many_reports")

    return TriageResult(
        priority=priority,
        reasons=list(dict.fromkeys(reasons)),
        escalations=sorted(escalations),
        component=_component(signals, text.all),
    )
