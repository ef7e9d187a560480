"""Triage reads the field guide's own sentences right.

Negated failure phrases are no failure ("calls are not being dropped"), a
working fallback makes a notification failure P1 unless another P0 ground
holds, and an explicit safety risk is P0 with the reason shown. The matching
report count behind ``many_reports`` stops at the triaged message's time.
"""

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import call_command

from tickets.models import Ticket
from tickets.triage import extract_facts, triage

UTC = dt.UTC
RECEIVED = dt.datetime(2026, 12, 9, 4, 0, tzinfo=UTC)  # 11 PM in New York


def triaged(body: str, subject: str = ""):
    facts = extract_facts(
        subject=subject, body=body, received_at=RECEIVED, zone="America/New_York"
    )
    return triage(
        subject=subject, body=body, facts=facts, business=None, received_at=RECEIVED
    )


@pytest.mark.parametrize(
    "body,priority,reason_start",
    [
        # The field guide's priority ladder, as written.
        ("SMS fails but email fallback still works", "P1", "partial failure, fallback"),
        (
            "SMS fails but the email fallback still works.",
            "P1",
            "partial failure, fallback works",
        ),
        (
            "Notifications failing and on-call never receives alerts",
            "P0",
            "on-call receives no",
        ),
        ("Call intake down; calls not being answered at all", "P0", "call intake"),
        (
            "Minor formatting issue in summaries, data still correct",
            "P2",
            "cosmetic",
        ),
        # The tester's reports.
        (
            "everything is fine now, calls are not being dropped and no summaries "
            "are missing",
            "P2",
            "failure words negated or said to be over",
        ),
        (
            "A caller reported a dog bit a child at the property, this is a "
            "safety risk.",
            "P0",
            "safety risk",
        ),
    ],
)
def test_field_guide_sentences(body, priority, reason_start):
    result = triaged(body)

    assert result.priority == priority
    assert result.reasons[0].startswith(reason_start)


@pytest.mark.parametrize(
    "body",
    [
        "Calls aren't being dropped and nobody is left on hold.",
        "Calls are no longer being dropped since your fix.",
        "The SMS isn't failing, texts arrive on time.",
        "Texts are not failing anymore.",
        "Text alerts failed from 8:10 PM, but it resolved itself at 9:30.",
        "Texts have been failing since 8 PM. It resolved itself at 9:30.",
        "Notifications aren't affected at all; nothing is lost. Don't worry.",
        "Lines went down at 8 PM. Thankfully it's all working again.",
    ],
)
def test_negated_or_recovered_failures_are_no_failure(body):
    result = triaged(body)

    assert result.priority == "P2", result.reasons


@pytest.mark.parametrize(
    "body,reason_start",
    [
        # A negation that is the failure itself stays a failure.
        ("Calls are no longer being answered since 9 PM.", "call intake down"),
        ("Callers aren't getting through since 9 PM.", "call intake down"),
        ("Calls are not being answered at all.", "call intake down"),
        ("Nobody got the summaries since 9 PM.", "no summaries"),
        # A negation elsewhere in the sentence does not reach the failure.
        ("Not sure why, but texts are failing since 9 PM.", "no summaries"),
        ("It's not just texts failing, emails are missing since 9 PM.", "no summ"),
        ("Calls weren't dropped but the summaries are missing since 9 PM.", "no "),
        (
            "We thought it resolved itself at 9:30 but since 10 PM texts and "
            "emails are failing again.",
            "no summaries",
        ),
    ],
)
def test_real_failures_next_to_negations_stay_p0(body, reason_start):
    result = triaged(body)

    assert result.priority == "P0", result.reasons
    assert result.reasons[0].startswith(reason_start)


@pytest.mark.parametrize(
    "body",
    [
        "Texts stopped at 9 PM, fallback works.",
        "Text alerts stopped at 9 PM but the emails still come through.",
        "texts arent coming thru since 9pm, the backup emails are working",
        "The email copies stopped at 9 PM, but SMS still arrives fine.",
        "Texts have been failing since 9 PM. Emails are working again.",
        "SMS to Dana failing since 9 PM; the email backup is working ok.",
    ],
)
def test_a_working_fallback_makes_a_notification_failure_p1(body):
    result = triaged(body)

    assert result.priority == "P1", result.reasons
    assert result.reasons[0].startswith("partial failure, fallback works")


@pytest.mark.parametrize(
    "body,reason_start",
    [
        (
            "Texts fail but email still arrives, and two other plumbers on your "
            "service have the same problem.",
            "multiple customers",
        ),
        (
            "A tenant reported a gas leak; the text failed but the email "
            "fallback got through 30 minutes later.",
            "safety risk",
        ),
        (
            "The texts failed from 10 PM and the email fallback worked at first, "
            "but since 11:20 PM nothing at all, no text and no email.",
            "no summaries",
        ),
        ("SMS fails and the email fallback doesn't work either.", "on-call"),
        ("Texts stopped at 9 PM and the backup isn't working.", "no summaries"),
    ],
)
def test_a_working_fallback_does_not_lower_another_p0_ground(body, reason_start):
    result = triaged(body)

    assert result.priority == "P0", result.reasons
    assert result.reasons[0].startswith(reason_start)


@pytest.mark.parametrize(
    "body",
    [
        "A caller reported a dog bit a child at the property, this is a safety risk.",
        "This is a safety issue: the caller said the wiring is sparking.",
        "A caller said a tenant was injured; your agent said to call back tomorrow.",
        "Caller had a medical emergency and the agent took a message.",
        "Tenant's carbon monoxide alarm went off, summary came an hour late.",
        "A caller reported flooding in the basement and the text never came.",
        "A caller said it was dangerous and our on-call never got the page.",
    ],
)
def test_explicit_safety_words_are_p0_with_the_reason_first(body):
    result = triaged(body)

    assert result.priority == "P0"
    assert result.reasons[0].startswith("safety risk: ")


@pytest.mark.parametrize(
    "body",
    [
        "No safety risk here and nobody was injured. The summary has a typo.",
        "This isn't a safety risk, just a typo in the summaries.",
        "No one was hurt and there was no gas leak. Summaries have typos.",
    ],
)
def test_negated_safety_words_are_not_a_safety_risk(body):
    result = triaged(body)

    assert result.priority == "P2", result.reasons


def test_workarounds_others_carry_out_count_as_given():
    for body in (
        "Dana is going by the emails.",
        "Ben is watching his email now.",
        "were reading the emails",
        "We're telling clients to use the main line.",
    ):
        facts = extract_facts(
            subject="", body=body, received_at=RECEIVED, zone="America/New_York"
        )
        assert facts.workaround, body


MESSAGE = """\
From: Marcus Bell <dispatch@harborplumbing.example>
To: Afterhours Support <support@afterhours.example>
Subject: texts failing
Date: Tue, 08 Dec 2026 22:20:00 -0500
Message-ID: <{mid}@mail.example>
Content-Type: text/plain; charset="utf-8"

Text alerts stopped arriving since about 9:40 PM ET but the emails still
come through. Line 617-555-0142, caller 617-555-0103 at 9:55 PM. Dana is
reading the emails for now.
"""


def ingest(tmp_path, mid: str) -> dict:
    path = tmp_path / f"{mid}.eml"
    path.write_text(MESSAGE.format(mid=mid))
    out = StringIO()
    call_command("ingest_email", str(path), "--json", stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.parametrize(
    "offsets_minutes,tagged",
    [
        ([-50, -40, -30, -20], True),
        # Reports after the message (it is an old one replayed) don't count.
        ([10, 20, 30, 40], False),
        # Nor does one ticket dated far in the future.
        ([-50, -40, 60 * 24 * 30, 10], False),
    ],
)
def test_many_reports_counts_only_reports_up_to_the_message(
    businesses, tmp_path, offsets_minutes, tagged
):
    received = dt.datetime(2026, 12, 9, 3, 20, tzinfo=UTC)
    for minutes in offsets_minutes:
        Ticket.objects.create(
            component="sms", received_at=received + dt.timedelta(minutes=minutes)
        )

    result = ingest(tmp_path, f"replayed-{len(offsets_minutes)}-{tagged}")

    assert result["priority"] == "P1"
    assert ("many_reports" in result["escalations"]) is tagged
