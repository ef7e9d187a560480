"""Phone numbers as customers write them: E.164 with the extension apart."""

import datetime as dt
from email import policy
from email.parser import BytesParser

import pytest

from tests.conftest import fixture_path
from tickets.triage import extract_facts, parse_phone, phone_numbers_in

RECEIVED = dt.datetime(2026, 12, 9, 15, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "text,expected",
    [
        # Field fault 7.
        ("(415) 555-0142 x22", ("+14155550142", "22")),
        ("415.555.0177 ext. 5", ("+14155550177", "5")),
        ("+1 415 555 0142;ext=22", ("+14155550142", "22")),
        # The win1252 case's numbers.
        ("415.555.0177", ("+14155550177", "")),
        ("(415) 555-0142", ("+14155550142", "")),
        ("415-555-0142 extension 7", ("+14155550142", "7")),
        ("+1 (415) 555-0142 #22", ("+14155550142", "22")),
        ("1-617-555-0199", ("+16175550199", "")),
        ("6175550199", ("+16175550199", "")),
        ("call 617-555-0142 now", ("+16175550142", "")),
        ("+44 20 7946 0958", ("+442079460958", "")),
    ],
)
def test_parse_phone_gives_e164_and_extension(text, expected):
    assert parse_phone(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no number here",
        "123",
        "555-0142",
        "CA9b1c2d3e4f5061728394a5b6c7d8e9f0",
        "2026-12-08",
        "10:15 PM",
        "x22",
        "9" * 400,
        None,
        12,
    ],
)
def test_parse_phone_refuses_what_is_not_a_number(text):
    assert parse_phone(text) is None


@pytest.mark.parametrize(
    "written,e164,extension",
    [
        ("(415) 555-0142 x22", "+14155550142", "22"),
        ("415.555.0177 ext. 5", "+14155550177", "5"),
        ("+1 415 555 0142;ext=22", "+14155550142", "22"),
    ],
)
def test_example_caller_with_extension_counts_as_given(written, e164, extension):
    body = f"No texts since 9 PM Eastern. Example caller: {written}."

    facts = extract_facts(subject="", body=body, received_at=RECEIVED, zone=None)

    assert (facts.example_call, facts.example_call_extension) == (e164, extension)
    assert "example_call" not in facts.missing()


@pytest.mark.parametrize(
    "written,e164,extension",
    [
        ("(415) 555-0142 x22", "+14155550142", "22"),
        ("415.555.0177 ext. 5", "+14155550177", "5"),
        ("+1 415 555 0142;ext=22", "+14155550142", "22"),
    ],
)
def test_business_line_with_extension_counts_as_given(written, e164, extension):
    body = f"Our main line {written} is dead."

    facts = extract_facts(subject="", body=body, received_at=RECEIVED, zone=None)

    assert (facts.business_line, facts.business_line_extension) == (e164, extension)
    assert facts.example_call == ""
    assert "business_line" not in facts.missing()


def test_win1252_case_numbers_read_from_the_decoded_body():
    """windows-1252 body without a declared charset, decoded as such."""
    message = BytesParser(policy=policy.default).parsebytes(
        fixture_path("mime", "win1252-folded-subject.eml").read_bytes()
    )
    part = message.get_body(preferencelist=("plain",))
    body = part.get_payload(decode=True).decode(
        part.get_content_charset() or "windows-1252"
    )

    facts = extract_facts(
        subject=str(message["Subject"]), body=body, received_at=RECEIVED, zone=None
    )

    assert [(p.e164, p.extension, p.role) for p in facts.phones] == [
        ("+14155550142", "22", "line"),
        ("+14155550177", "", "caller"),
    ]
    assert phone_numbers_in(body) == ["+14155550142", "+14155550177"]


@pytest.mark.parametrize(
    "body,line,example",
    [
        # Known lines are the line, whatever the words around them.
        ("Please check 312-555-0119 and 773-555-0136.", "+13125550119", "+17735550136"),
        # Context names the line even when the business is unknown.
        ("Our emergency line 415-555-0150 is silent.", "+14155550150", ""),
        ("Calls to 415-555-0150 go nowhere.", "+14155550150", ""),
        ("The caller's number was 415-555-0187.", "", "+14155550187"),
        ("A tenant called from 303-555-0110 at 11:02pm.", "", "+13035550110"),
        ("Example: 303-555-0110.", "", "+13035550110"),
        # Numbers for reaching the sender are neither.
        ("Please call me back at 617-555-0100.", "", ""),
        ("My cell is 617-555-0100.", "", ""),
        # A provider call id is an example call.
        (
            "One call ID is CA9b1c2d3e4f5061728394a5b6c7d8e9f0.",
            "",
            "CA9b1c2d3e4f5061728394a5b6c7d8e9f0",
        ),
    ],
)
def test_number_roles_from_context(body, line, example):
    facts = extract_facts(
        subject="",
        body=body,
        received_at=RECEIVED,
        zone=None,
        business_lines=["+13125550118", "+1 (312) 555-0119"],
    )

    assert facts.business_line == line
    assert facts.example_call == example


def test_call_id_digits_are_not_read_as_a_phone_number():
    facts = extract_facts(
        subject="",
        body="Example call ID is CA9b1c2d3e4f5061728394a5b6c7d8e9f0.",
        received_at=RECEIVED,
        zone=None,
    )

    assert facts.phones == []
