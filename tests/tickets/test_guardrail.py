import pytest

from tickets.guardrail import check_outgoing

SCRIPTS = [
    "We’re seeing an issue that can affect call intake and notifications. We’re "
    "actively investigating and will update you by 11:30 PM EST. If you have an "
    "urgent call now, please share the caller phone and issue summary so your "
    "on-call can follow up.",
    "We’ve identified the cause and are working on a fix. Notifications may be "
    "delayed for some calls. Next update by 12:00 AM EST. If needed, your on-call "
    "can place a manual callback.",
    "This incident is resolved. Call intake and notifications are operating "
    "normally. If you notice any remaining issues, reply here and we’ll follow up.",
    "We don’t see that call in our system yet. We’re checking upstream logs now. "
    "If you can share the caller number and time, we’ll trace it immediately.",
    "Our best estimate for a fix is between 11 PM and 1 AM Eastern.",
    "We expect texts to be back to normal in 30-60 minutes.",
]


@pytest.mark.parametrize("text", SCRIPTS)
def test_the_field_guide_scripts_pass(text):
    assert check_outgoing(text) == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Good news: it's definitely fixed.", "it's definitely fixed"),
        ("Honestly, no idea what happened here.", "no idea what happened"),
        ("We didn’t get your call last night.", "We didn’t get your call"),
        ("This can't happen with our setup.", "This can't happen"),
        (
            "We'll make sure it never happens again.",
            "We'll make sure it never happens again",
        ),
        ("Delivery is guaranteed from now on.", "guaranteed"),
        ("Texts will never be delayed again.", "never"),
        ("The issue is fully resolved.", "fully resolved"),
        ("It will be fixed by 11 PM.", "fixed by 11 PM"),
        ("SMS should be back up in 20 minutes.", "back up in 20 minutes"),
    ],
)
def test_never_say_phrases_absolutes_certainty_and_single_etas_are_found(text, words):
    findings = check_outgoing(text)
    assert [f.words for f in findings][:1] == [words]
    assert findings[0].why


def test_not_received_is_allowed_once_verified():
    text = "We didn't receive your call: the provider never sent it to us."
    assert [f.words for f in check_outgoing(text, call_missing_verified=True)] == [
        "never"
    ]
