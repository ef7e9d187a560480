"""The never-say check on every outgoing agent reply and incident update.

The field guide's never-say list and its overcommitment rules, as findings an
agent can read: which words, and why. A message with findings is held; the
agent may send it anyway only with a reason, which is logged.
"""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    words: str
    why: str


# Curly and straight apostrophes both occur in pasted text.
_APOS = "['\u2019]"


def _phrase(text: str) -> re.Pattern:
    return re.compile(text.replace("'", _APOS), re.IGNORECASE)


NEVER_SAY = [
    (
        _phrase(r"\b(it|this|that|everything)('s| is)\s+(now\s+)?definitely\s+fixed\b"),
        "certainty about a fix we cannot stand behind; say what we observe now",
    ),
    (
        _phrase(r"\bno idea what happened\b"),
        "sounds like nobody is in charge; say what is known and what is next",
    ),
    (
        _phrase(r"\bwe did(n't| not) (get|receive) your call\b"),
        'only when verified; otherwise say "We don\'t see it yet"',
    ),
    (
        _phrase(r"\b(this|that|it) (can't|cannot|can not) happen\b"),
        "it just did; acknowledge the impact instead",
    ),
    (
        _phrase(r"\bwe('ll| will) make sure (it|this|that) never happens again\b"),
        "a promise we cannot keep; describe the fix and follow-up instead",
    ),
]
CALL_NOT_RECEIVED = NEVER_SAY[2][0]

ABSOLUTES = re.compile(
    r"\b(never|guaranteed?|guarantees|100\s?%|always will|permanently fixed|"
    r"fixed for good|will not happen again|won't happen again)\b",
    re.IGNORECASE,
)
CERTAINTY = _phrase(
    r"\b(definitely|certainly|completely|fully|totally|100%)\s+"
    r"(fixed|resolved|solved|sorted)\b"
)
# A single time given for a fix ("fixed by 11 PM", "back up in 20 minutes").
# A next-update time is fine: it is a promise we control.
_TIME = r"(\d{1,2}(:\d{2})?\s*(am|pm|a\.m\.|p\.m\.)?|noon|midnight)"
_DURATION = r"(\d+|an?|one|two|three|few)\s+(minutes?|mins?|hours?|hrs?)"
SINGLE_ETA = re.compile(
    rf"\b(fixed|resolved|restored|back (up|online|to normal)|working again|"
    rf"up and running|fix(ed)? will be (live|in place)|done)\b[^.!?\n]{{0,40}}?"
    rf"\b(by|at|in|within)\s+({_DURATION}|{_TIME})(?!\s*(-|–|to|or)\s*\d)",
    re.IGNORECASE,
)
RANGE_NEARBY = re.compile(r"\b(between|best estimate|range)\b|\d\s*(-|–|to)\s*\d")


def check_outgoing(text: str, *, call_missing_verified: bool = False) -> list[Finding]:
    """Every finding in an outgoing customer message, in reading order."""
    findings: list[tuple[int, Finding]] = []
    for pattern, why in NEVER_SAY:
        if pattern is CALL_NOT_RECEIVED and call_missing_verified:
            continue
        for match in pattern.finditer(text):
            findings.append((match.start(), Finding(match.group(0), why)))
    for match in ABSOLUTES.finditer(text):
        # "never" inside a never-say phrase is already reported with it.
        if any(pos <= match.start() < pos + len(f.words) for pos, f in findings):
            continue
        findings.append(
            (
                match.start(),
                Finding(match.group(0), 'an absolute; use "best estimate" language'),
            )
        )
    for match in CERTAINTY.finditer(text):
        findings.append(
            (
                match.start(),
                Finding(match.group(0), "certainty about a fix; say what we observe"),
            )
        )
    for match in SINGLE_ETA.finditer(text):
        sentence_end = text.find(".", match.end())
        sentence = text[match.start() : sentence_end if sentence_end != -1 else None]
        if RANGE_NEARBY.search(sentence):
            continue
        findings.append(
            (
                match.start(),
                Finding(
                    match.group(0),
                    "an ETA as a single time; give a best-estimate range instead",
                ),
            )
        )
    findings.sort(key=lambda item: item[0])
    unique: list[Finding] = []
    for _, finding in findings:
        if finding not in unique:
            unique.append(finding)
    return unique
