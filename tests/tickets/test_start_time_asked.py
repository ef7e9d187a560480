"""An unclear start time is asked about in the first reply, never guessed.

Messages of the triage set go through `ingest_email`; the first reply owed
in the outbox names the words the customer wrote and asks the question that
fits: which of the two 1:30s on the night clocks went back, what the clock
showed on the night 2:30 did not exist, or the date and zone when a zone
word or a bare hour leaves it open.
"""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from notifications.models import Notification
from tickets.models import Ticket

SET_DIR = Path(__file__).parent / "triage_set"


def first_reply_of(name: str) -> tuple[Ticket, str]:
    out = StringIO()
    call_command("ingest_email", str(SET_DIR / name), "--json", stdout=out)
    ticket = Ticket.objects.get(reference=json.loads(out.getvalue())["ticket"])
    reply = Notification.objects.get(
        ticket=ticket, reason=Notification.Reason.FIRST_REPLY
    )
    return ticket, reply.body


@pytest.mark.parametrize(
    "name,written,question",
    [
        (
            "06-harbor-dst-fall-back-repeated-hour.eml",
            "1:30 AM last night",
            "did you mean the first 1:30 AM (EDT) or the second 1:30 AM (EST)?",
        ),
        (
            "07-harbor-dst-spring-forward-skipped-hour.eml",
            "2:30 AM today",
            "2:30 AM was skipped. What time did your clock show",
        ),
        (
            "60-unknown-ist-several-zones.eml",
            "9:15 AM IST today",
            "Could you give the start time with the date and your time zone",
        ),
        (
            "65-unknown-cst-several-zones.eml",
            "9 PM CST",
            "Could you give the start time with the date and your time zone",
        ),
        (
            "59-lakeshore-no-meridiem-since-930.eml",
            "9:30",
            "Could you give the start time with the date and your time zone",
        ),
    ],
)
def test_unclear_start_time_is_stored_unclear_and_asked_about(
    businesses, name, written, question
):
    ticket, body = first_reply_of(name)

    assert ticket.started_at is None
    assert ticket.started_at_unclear is True
    assert ticket.started_at_text == written
    assert "started_at" in ticket.missing_facts
    assert f'You mentioned "{written}"' in body
    assert question in body


@pytest.mark.parametrize(
    "name,utc",
    [
        # "9:40pm ET" on Tue Dec 8: 02:40 UTC on Dec 9.
        ("01-harbor-texts-stopped-940pm-et.eml", "2026-12-09T02:40:00+00:00"),
        # "21:40 CT" on Mon Dec 14: 03:40 UTC on Dec 15.
        ("13-cedar-2140-ct-airtable-half.eml", "2026-12-15T03:40:00+00:00"),
        # "around 10 last night", Pacific, read on Thu Dec 10.
        ("37-bayview-run-on-around-10-last-night.eml", "2026-12-10T06:00:00+00:00"),
        # "1:30 AM EDT" on the night clocks went back: the first 1:30.
        ("50-northside-edt-on-fall-back-day.eml", "2026-11-01T05:30:00+00:00"),
    ],
)
def test_clear_start_time_is_stored_in_utc_and_not_asked_about(businesses, name, utc):
    ticket, body = first_reply_of(name)

    assert ticket.started_at.isoformat() == utc
    assert ticket.started_at_unclear is False
    assert "When did this start?" not in body
    assert "You mentioned" not in body
