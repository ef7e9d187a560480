"""Start times as people write them, read against the message's arrival."""

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest

from tickets.triage import extract_facts

UTC = dt.UTC
NEW_YORK = "America/New_York"


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def started(text, received, zone=None):
    facts = extract_facts(subject="", body=text, received_at=received, zone=zone)
    return facts


@pytest.mark.parametrize(
    "text,received,zone,expected",
    [
        # T01: Mon Dec 7 22:52 EST.
        (
            "since about 9:30 PM Eastern",
            at(2026, 12, 8, 3, 52),
            None,
            at(2026, 12, 8, 2, 30),
        ),
        # T03: Fri Dec 11 23:20 MST; "tonight" is that evening.
        (
            "since around 10:45pm MST tonight",
            at(2026, 12, 12, 6, 20),
            "America/Denver",
            at(2026, 12, 12, 5, 45),
        ),
        # T05: Mon Dec 14 03:05 CST.
        ("at 2:40 AM Central", at(2026, 12, 14, 9, 5), None, at(2026, 12, 14, 8, 40)),
        # T07: Wed Dec 9 21:00 CST.
        ("since 8:10 PM CT", at(2026, 12, 10, 3, 0), None, at(2026, 12, 10, 2, 10)),
        # T04: Thu Dec 10 09:30 PST; yesterday is Dec 9.
        (
            "around 8 PM Pacific yesterday",
            at(2026, 12, 10, 17, 30),
            None,
            at(2026, 12, 10, 4, 0),
        ),
        # T06: Tue Dec 15 09:00 EST.
        (
            "after 6:15 AM Eastern today",
            at(2026, 12, 15, 14, 0),
            None,
            at(2026, 12, 15, 11, 15),
        ),
        # The reply to T02.
        (
            "around 7 PM Central on Dec 8",
            at(2026, 12, 9, 16, 2),
            None,
            at(2026, 12, 9, 1),
        ),
        (
            "since 7 PM CST on December 8th, 2026",
            at(2026, 12, 9, 16),
            "America/Chicago",
            at(2026, 12, 9, 1),
        ),
        ("since 21:30 ET", at(2026, 12, 8, 3, 52), None, at(2026, 12, 8, 2, 30)),
        (
            "since 9:30 p.m. Eastern Time",
            at(2026, 12, 8, 3, 52),
            None,
            at(2026, 12, 8, 2, 30),
        ),
        ("since 9:30 PM (ET)", at(2026, 12, 8, 3, 52), None, at(2026, 12, 8, 2, 30)),
        ("since 9:30 PM UTC-5", at(2026, 12, 8, 3, 52), None, at(2026, 12, 8, 2, 30)),
        (
            "since 9:30 PM America/New_York",
            at(2026, 12, 8, 3, 52),
            None,
            at(2026, 12, 8, 2, 30),
        ),
        (
            "since 2026-12-07T21:30:00-05:00",
            at(2026, 12, 8, 3, 52),
            None,
            at(2026, 12, 8, 2, 30),
        ),
        (
            "started around midnight Eastern",
            at(2026, 12, 8, 12),
            None,
            at(2026, 12, 8, 5),
        ),
        # No zone written: the business's zone.
        ("since 9:30 PM", at(2026, 12, 8, 3, 52), NEW_YORK, at(2026, 12, 8, 2, 30)),
        (
            "since 9:30 PM",
            at(2026, 12, 8, 3, 52),
            ZoneInfo(NEW_YORK),
            at(2026, 12, 8, 2, 30),
        ),
        # A zone written once counts for the message's other times.
        (
            "It began at 9:30 PM. Example call at 10:15 PM Eastern.",
            at(2026, 12, 8, 3, 52),
            None,
            at(2026, 12, 8, 2, 30),
        ),
        # Written the night before, read the next morning.
        (
            "since 11 PM Eastern last night",
            at(2026, 12, 8, 13),
            None,
            at(2026, 12, 8, 4),
        ),
        (
            "since 1:15 AM Eastern last night",
            at(2026, 12, 8, 13),
            None,
            at(2026, 12, 8, 6, 15),
        ),
        # Past midnight: "11 PM tonight" is the evening just gone.
        (
            "since 11 PM Eastern tonight",
            at(2026, 12, 8, 5, 30),
            None,
            at(2026, 12, 8, 4),
        ),
        ("since 9 PM Eastern on Sunday", at(2026, 12, 8, 15), None, at(2026, 12, 7, 2)),
        ("since 9 PM Eastern on 12/6", at(2026, 12, 8, 15), None, at(2026, 12, 7, 2)),
        # A date late in the year read in January is last year's.
        ("since 9 PM Eastern on Dec 30", at(2027, 1, 2, 15), None, at(2026, 12, 31, 2)),
        ("about 20 minutes ago", at(2026, 12, 8, 3, 52), None, at(2026, 12, 8, 3, 32)),
        (
            "down for the last 2 hours",
            at(2026, 12, 8, 3, 52),
            None,
            at(2026, 12, 8, 1, 52),
        ),
        # Abbreviations with several meanings, settled by the business's zone.
        ("since 9 PM CST", at(2026, 12, 9, 15), "America/Chicago", at(2026, 12, 9, 3)),
        ("since 9 PM CST", at(2026, 12, 9, 15), NEW_YORK, at(2026, 12, 9, 3)),
        ("since 9 PM CST", at(2026, 12, 9, 15), "Asia/Shanghai", at(2026, 12, 9, 13)),
        ("since 9 AM IST", at(2026, 12, 9, 15), "Asia/Kolkata", at(2026, 12, 9, 3, 30)),
        ("since 9 AM IST", at(2026, 12, 9, 15), "Europe/London", at(2026, 12, 9, 9)),
        # Issue 3 item 6, as people write them.
        ("since 9:40pm ET", at(2026, 12, 9, 3, 31), None, at(2026, 12, 9, 2, 40)),
        ("since 21:40 CT", at(2026, 12, 15, 4, 5), None, at(2026, 12, 15, 3, 40)),
        # Tue Dec 8 22:00 in each business's zone, read the next morning.
        (
            "around 10 last night",
            at(2026, 12, 9, 12, 30),
            NEW_YORK,
            at(2026, 12, 9, 3),
        ),
        (
            "around 10 last night",
            at(2026, 12, 10, 15, 45),
            "America/Los_Angeles",
            at(2026, 12, 10, 6),
        ),
        ("around 1 last night", at(2026, 12, 9, 12, 30), NEW_YORK, at(2026, 12, 9, 6)),
        (
            "since 6:30 this morning",
            at(2026, 12, 14, 15, 40),
            "America/Denver",
            at(2026, 12, 14, 13, 30),
        ),
        (
            "since 7 yesterday evening",
            at(2026, 12, 9, 15),
            NEW_YORK,
            at(2026, 12, 9, 0),
        ),
        # A daylight-time word names the first of the repeated hour.
        (
            "since 1:30 AM EDT on Nov 1",
            at(2026, 11, 1, 12, 5),
            None,
            at(2026, 11, 1, 5, 30),
        ),
        (
            "since 1:30 AM CDT",
            at(2026, 11, 1, 12, 5),
            "America/Chicago",
            at(2026, 11, 1, 6, 30),
        ),
        # On the spring-forward day, 3:15 AM exists.
        (
            "since 3:15 AM on March 8",
            at(2026, 3, 8, 13),
            NEW_YORK,
            at(2026, 3, 8, 7, 15),
        ),
        ("since 18:30 MEZ", at(2026, 12, 15, 18, 20), None, at(2026, 12, 15, 17, 30)),
        # A first number over 12 can only be the day.
        (
            "since 21:00 on 13/12",
            at(2026, 12, 15, 15),
            "America/Chicago",
            at(2026, 12, 14, 3),
        ),
        ("since 9 PM CET on 13/12", at(2026, 12, 15, 15), None, at(2026, 12, 13, 20)),
    ],
)
def test_time_is_read_as_an_aware_utc_start(text, received, zone, expected):
    facts = started(text, received, zone)

    assert not facts.started_at_unclear, facts.started_at_text
    assert facts.started_at == expected
    assert facts.started_at.utcoffset() == dt.timedelta(0)
    assert "started_at" not in facts.missing()


@pytest.mark.parametrize(
    "text,received,zone",
    [
        # Fall-back day 2026-11-01 in New York: 1:00-2:00 happens twice.
        ("since 1:30 AM Eastern, Nov 1", at(2026, 11, 1, 12, 5), None),
        ("since 1:30 AM Eastern", at(2026, 11, 1, 12, 5), None),
        ("since 1:30 AM", at(2026, 11, 1, 12, 5), NEW_YORK),
        ("since 1:30 AM EST on Nov 1", at(2026, 11, 1, 12, 5), None),
        # Spring-forward day 2026-03-08: 2:00-3:00 does not exist.
        ("since 2:30 AM Eastern on Mar 8", at(2026, 3, 8, 15), None),
        ("since 2:30 AM", at(2026, 3, 8, 15), NEW_YORK),
        # Abbreviations with several meanings and nothing to settle them.
        ("since 9 PM CST", at(2026, 12, 9, 15), None),
        ("since 9 PM CST", at(2026, 12, 9, 15), "Europe/London"),
        ("since 9 AM IST", at(2026, 12, 9, 15), None),
        ("since 10:45pm MST tonight", at(2026, 12, 12, 6, 20), None),
        # No zone at all, or a zone that does not exist.
        ("since 9:30 PM", at(2026, 12, 8, 3, 52), None),
        ("since 9:30 PM", at(2026, 12, 8, 3, 52), "Mars/Olympus"),
        ("since 9:30 PM Europe/Atlantis", at(2026, 12, 8, 3, 52), None),
        # AM or PM not said.
        ("since 9:30 Eastern", at(2026, 12, 8, 3, 52), None),
        # A date that does not exist, or a start after the message.
        ("since 9 PM Eastern on Feb 30", at(2026, 12, 8, 3, 52), None),
        ("since 11 PM Eastern today", at(2026, 12, 8, 14), None),
        ("since 9 PM Eastern on Dec 9", at(2026, 12, 8, 3, 52), None),
        ("since 9 PM UTC+19", at(2026, 12, 8, 3, 52), None),
        # Day and month order unknown outside North America.
        ("since 9 PM CET on 3/4", at(2026, 4, 5, 12), None),
        # A bare hour with nothing to say which half of the day.
        ("No summaries since 7:00 and it's 9:30 now.", at(2026, 12, 10, 3, 31), None),
        ("Calls dropped since 9:30.", at(2026, 12, 18, 17), "America/Chicago"),
        # A part of the day that fits both halves, or neither.
        ("since 5 last night", at(2026, 12, 9, 15), NEW_YORK),
        ("since 9 this afternoon", at(2026, 12, 9, 23), NEW_YORK),
        # A standard-time word on the repeated hour settles nothing.
        ("since 1:30 AM CST", at(2026, 11, 1, 12, 5), "America/Chicago"),
        # A daylight-time word on the skipped hour is still asked about.
        ("since 2:30 AM EDT on Mar 8", at(2026, 3, 8, 15), None),
        # Neither number can be the month.
        ("since 9 PM Eastern on 13/14", at(2026, 12, 15, 15), None),
        # A zone word with several meanings and nothing to settle them.
        ("since 9:15 AM IST today", at(2026, 12, 15, 4, 35), None),
    ],
)
def test_unclear_time_is_asked_about_never_guessed(text, received, zone):
    facts = started(text, received, zone)

    assert facts.started_at is None
    assert facts.started_at_unclear is True
    assert facts.started_at_text
    assert "started_at" in facts.missing()


def test_spring_forward_times_on_either_side_are_read():
    received = at(2026, 3, 8, 15)

    before = started("since 1:30 AM Eastern, Mar 8", received)
    after = started("since 3:30 AM Eastern, Mar 8", received)

    assert before.started_at == at(2026, 3, 8, 6, 30)  # EST, -5
    assert after.started_at == at(2026, 3, 8, 7, 30)  # EDT, -4


def test_fall_back_times_on_either_side_are_read():
    received = at(2026, 11, 1, 12, 5)

    before = started("since 12:30 AM Eastern, Nov 1", received)
    after = started("since 2:30 AM Eastern, Nov 1", received)

    assert before.started_at == at(2026, 11, 1, 4, 30)  # EDT, -4
    assert after.started_at == at(2026, 11, 1, 7, 30)  # EST, -5


@pytest.mark.parametrize(
    "text",
    [
        "We had 3 last night and 2 this morning.",
        "Dana took 4 tonight.",
        "Room 10 last night was fine.",
    ],
)
def test_a_count_before_a_part_of_the_day_is_not_a_time(text):
    """Only "at/around/since 10 last night" reads a bare number as an hour."""
    facts = started(text, at(2026, 12, 9, 15), NEW_YORK)

    assert facts.started_at is None
    assert facts.started_at_text == ""


def test_overnight_is_not_a_start_time():
    facts = started(
        "The summaries we got overnight look off.", at(2026, 12, 9, 15), NEW_YORK
    )

    assert facts.started_at is None
    assert not facts.started_at_unclear
    assert facts.started_at_text == ""
    assert "started_at" in facts.missing()


def test_the_start_time_is_preferred_over_the_example_call_time():
    text = (
        "Example caller: 773-555-0136 at 8:25 PM. "
        "Nothing has come through since 8:10 PM CT."
    )

    facts = started(text, at(2026, 12, 10, 3, 0))

    assert facts.started_at == at(2026, 12, 10, 2, 10)
    assert facts.started_at_text == "8:10 PM CT"


def test_ambiguous_start_time_is_not_replaced_by_a_clear_call_time():
    text = "Dead since 1:30 AM Eastern, Nov 1. A caller tried at 6:45 AM Eastern."

    facts = started(text, at(2026, 11, 1, 12, 5))

    assert facts.started_at is None and facts.started_at_unclear


def test_naive_received_time_is_taken_as_utc():
    naive = dt.datetime(2026, 12, 8, 3, 52)  # noqa: DTZ001
    facts = started("since 9:30 PM Eastern", naive)

    assert facts.started_at == at(2026, 12, 8, 2, 30)


GARBAGE = [
    "",
    "::::",
    "99:99 PM Eastern",
    "0:00 am",
    "13 PM CST",
    "since 12:60 PM ET",
    "since 1:30 AM Eastern, Nov 31",
    "since 9 PM on 13/45/2026",
    "since 9 PM on Feb 29",
    "since 9 PM UTC+99:99",
    "since 9 PM GMT-",
    "since 9 PM America/",
    "yesterday yesterday tonight last night 9 PM 9 PM 9 PM",
    "9 PM " * 2000,
    "since " + "1" * 5000 + ":30 PM",
    "for the last 99999 hours",
    "about 0 minutes ago",
    "2026-13-45T99:99:99+99:99",
    "2026-02-30T10:00:00",
    "\x00\ufffd\u202e 9:30 PM \u2028 Eastern",
    "9:30 PM Eastern on Monday Tuesday Wednesday",
]


@pytest.mark.parametrize("text", GARBAGE)
@pytest.mark.parametrize("zone", [None, NEW_YORK, "Not/AZone", "", ZoneInfo("UTC")])
def test_garbage_never_raises(text, zone):
    facts = extract_facts(
        subject=text[:100], body=text, received_at=at(2026, 11, 1, 6, 30), zone=zone
    )

    assert facts.started_at is None or facts.started_at.tzinfo is not None


def test_random_text_never_raises():
    alphabet = "0123456789 :/.,-+()APMapmxext;=ESTCDTPacificEastern\n>\u2013"
    rng = random.Random(20261101)
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        extract_facts(
            subject=text[:40],
            body=text,
            received_at=at(2026, 3, 8, 7, 0),
            zone=rng.choice([None, NEW_YORK, "Asia/Kolkata"]),
        )
