"""Every triage case through `ingest_email --json`, against expected.json."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from tests.conftest import fixture_path

EXPECTED = json.loads(fixture_path("triage", "expected.json").read_text())


def ingest_json(path) -> dict:
    out = StringIO()
    call_command("ingest_email", str(path), "--json", stdout=out)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1, "--json prints exactly one JSON object"
    return json.loads(lines[0])


@pytest.mark.parametrize("case", EXPECTED, ids=[case["file"] for case in EXPECTED])
def test_triage_case_gives_expected_business_priority_escalations_missing(
    businesses, case
):
    result = ingest_json(fixture_path("triage", case["file"]))

    assert result["business"] == case["business"]
    assert result["priority"] == case["priority"]
    assert result["escalations"] == case["escalations"]
    assert result["missing"] == case["missing"]
    assert result["ticket"].startswith("AH-")
    assert result["thread"] == "new"
    assert result["first_reply_sent"] is True


def test_json_output_has_exactly_the_documented_keys(businesses):
    result = ingest_json(fixture_path("triage", "T04.eml"))

    assert set(result) == {
        "ticket",
        "business",
        "priority",
        "escalations",
        "missing",
        "thread",
        "first_reply_sent",
    }


def test_replaying_the_same_file_opens_no_second_ticket(businesses):
    from tickets.models import Ticket

    first = ingest_json(fixture_path("triage", "T03.eml"))
    second = ingest_json(fixture_path("triage", "T03.eml"))

    assert second["ticket"] == first["ticket"]
    assert Ticket.objects.count() == 1


def test_replayed_message_arrives_at_its_date_header(businesses):
    """T01 is dated 03:52 UTC on Dec 8: that is the ticket's arrival."""
    import datetime as dt

    from tickets.models import Ticket

    ingest_json(fixture_path("triage", "T01.eml"))

    ticket = Ticket.objects.get()
    assert ticket.received_at == dt.datetime(2026, 12, 8, 3, 52, tzinfo=dt.UTC)
