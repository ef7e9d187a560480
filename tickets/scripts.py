"""The words we send customers, from the field guide's support scripts.

The P0/P1 acknowledgement is the field guide's own script; the P2 one is
written in the same voice. Every text here passes the never-say check
(`tickets.guardrail.check_outgoing`): it states what we do next and when,
with no absolutes such as "never" or "guaranteed".
"""

ACKNOWLEDGEMENT = {
    "P0": (
        "We're seeing an issue that can affect call intake and notifications. "
        "We're actively investigating and will update you by {time}. If you "
        "have an urgent call now, please share the caller phone and issue "
        "summary so your on-call can follow up."
    ),
    "P2": (
        "Thanks for letting us know. We've logged this as a non-urgent issue "
        "and are looking into it. We'll update you by {time}. If calls or "
        "notifications start to be affected, reply here and we'll treat it "
        "as urgent."
    ),
}
ACKNOWLEDGEMENT["P1"] = ACKNOWLEDGEMENT["P0"]

MISSING_FACTS_INTRO = "To help us trace this quickly, please reply with:"

# One plain question per required fact still missing.
MISSING_FACT_QUESTIONS = {
    "business_line": (
        "Which business and phone line is affected (the number your callers dial)?"
    ),
    "started_at": (
        "When did this start? Please include the date, the time and your time zone."
    ),
    "symptoms": "What did you expect to happen, and what happened instead?",
    "example_call": (
        "Can you share one example call: the caller's phone number or the "
        "call ID, and about when they called?"
    ),
    "workaround": (
        "Have you tried anything to work around it so far? If not, just say so."
    ),
}

# A start time that happened twice (clocks went back) or not at all (clocks
# went forward) is asked about, never guessed.
STARTED_AT_REPEATED = (
    'You mentioned "{text}". Clocks went back that night, so {local} happened '
    "twice: did you mean the first {local} ({first}) or the second {local} "
    "({second})?"
)
STARTED_AT_SKIPPED = (
    'You mentioned "{text}", but clocks went forward that night and {local} '
    "was skipped. What time did your clock show when this started?"
)
STARTED_AT_UNREADABLE = (
    'You mentioned "{text}". Could you give the start time with the date and '
    "your time zone, so we read it correctly?"
)

REFERENCE_LINE = (
    "Your reference is {reference}; please keep it in the subject when you reply."
)
GREETING = "Hello {name},"
GREETING_NO_NAME = "Hello,"
SIGN_OFF = "{team}"

# Short enough for one SMS segment in most cases; no customer personal data
# beyond the business's name.
P0_PAGE = "afterhours P0 {reference}: {business}, {component}. Acknowledge by {due}."
P0_PAGE_UNKNOWN_BUSINESS = "business not matched yet"
P0_PAGE_UNKNOWN_COMPONENT = "component unknown"
