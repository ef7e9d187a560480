"""The words we send customers, from the field guide's support scripts.

The P0/P1 acknowledgement is the field guide's own script; the P2 one is
written in the same voice. Every text here passes the never-say check
(`tickets.guardrail.check_outgoing`): it states what we do next and when,
with no absolutes such as "never" or "guaranteed".

The support scripts agents reply with are `ReplyScript` rows, seeded from the
field guide by a migration and editable in admin; `script_text` reads the
stored one and falls back to the wording here when it is missing or broken.
"""

import logging

from .models import ReplyScript

logger = logging.getLogger(__name__)

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

# --- Reply scripts (ReplyScript rows; these are the seeded defaults) --------

ACKNOWLEDGEMENT_SCRIPT = {
    "P0": "acknowledgement",
    "P1": "acknowledgement",
    "P2": "acknowledgement-p2",
}
DEFAULT_SCRIPTS = {
    "acknowledgement": ACKNOWLEDGEMENT["P0"].replace("{time}", "{next_update}"),
    "acknowledgement-p2": ACKNOWLEDGEMENT["P2"].replace("{time}", "{next_update}"),
    "status-identified": (
        "We've identified the cause and are working on a fix. Notifications may "
        "be delayed for some calls. Next update by {next_update}. If needed, "
        "{workaround}."
    ),
    "resolved": (
        "This incident is resolved. Call intake and notifications are operating "
        "normally. If you notice any remaining issues, reply here and we'll "
        "follow up."
    ),
    "call-not-seen": (
        "We don't see that call in our system yet. We're checking upstream logs "
        "now. If you can share the caller number and time, we'll trace it "
        "immediately."
    ),
}
# The field guide's safe fallback, offered wherever a script says {workaround}.
DEFAULT_WORKAROUND = "your on-call can place a manual callback"
# Added to an agent's reply whose text does not already name the next update.
NEXT_UPDATE_LINE = "Next update by {next_update}."


def script_text(*, slug: str, values: dict[str, str]) -> str:
    """The script `slug` rendered with `values`.

    The stored script wins; a missing one, or one an agent broke (a stray
    brace slipped past the admin's check), falls back to the default wording
    so a customer still gets a sensible message.
    """
    script = ReplyScript.objects.filter(slug=slug).first()
    if script is not None:
        try:
            return script.render(values)
        except (KeyError, IndexError, ValueError, AttributeError):
            logger.warning("reply script %s cannot be rendered; default used", slug)
    fallback = ReplyScript(slug=slug, body=DEFAULT_SCRIPTS[slug])
    return fallback.render(values)


# --- SLA alerts (SMS-sized; no customer personal data) -----------------------

SLA_CLOCK_WORDS = {"acknowledge": "acknowledgement", "next_update": "next update"}
SLA_REMINDER = (
    "afterhours {reference} {priority}: {clock} due by {due} ({business}). "
    "Reply or update before then."
)
SLA_BREACH = (
    "afterhours SLA BREACH {reference} {priority}: {clock} was due by {due} "
    "({business}). Take it now."
)
SLA_REMINDER_SUBJECT = "[{reference}] {clock} due by {due}"
