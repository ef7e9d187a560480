"""Generated times and text: reading a start time never crashes or guesses.

Hypothesis builds messages out of the pieces people write (clock readings,
zone words, dates, parts of the day, the DST nights of 2026 in New York) and
out of arbitrary text, for any zone and arrival time. Whatever comes in,
the start time is either an aware UTC value written in the message, or
marked unclear, or not given; and triage still picks a priority.
"""

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickets.triage import FUTURE_SLACK, extract_facts, triage

UTC = dt.UTC
RUNS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

CLOCKS = st.one_of(
    st.builds(
        "{}:{:02d} {}".format,
        st.integers(0, 13),
        st.integers(0, 61),
        st.sampled_from(["AM", "PM", "am", "p.m.", "", "pm ET"]),
    ),
    st.builds("{}:{:02d}".format, st.integers(0, 25), st.integers(0, 60)),
    st.builds("{}{}".format, st.integers(0, 13), st.sampled_from(["am", "pm", ""])),
    st.sampled_from(["noon", "midnight", "9:40pm ET", "21:40 CT", "1:30 AM EDT"]),
)
ZONE_WORDS = st.sampled_from(
    [
        "",
        "ET",
        "CT",
        "MT",
        "PT",
        "EST",
        "EDT",
        "CST",
        "IST",
        "BST",
        "MST",
        "MEZ",
        "Eastern",
        "Pacific Daylight Time",
        "UTC",
        "UTC+5:30",
        "GMT-99",
        "America/New_York",
        "Europe/Atlantis",
        "local time",
    ]
)
DATES = st.sampled_from(
    [
        "",
        "today",
        "tonight",
        "last night",
        "this morning",
        "yesterday evening",
        "on Nov 1",
        "on Mar 8",
        "on Feb 30",
        "on 12/31",
        "on 31/12",
        "on Sunday",
        "last Monday",
        "2026-11-01",
        "on December 8th, 2026",
    ]
)
CUES = st.sampled_from(["since", "around", "at", "from", "started", "", "about"])
WRITTEN_TIMES = st.builds(
    "{} {} {} {}".format, CUES, CLOCKS, ZONE_WORDS, DATES
) | st.builds("{} {} {}".format, CUES, st.integers(0, 30), DATES)
ZONES = st.sampled_from(
    [None, "", "America/New_York", "America/Chicago", "Asia/Kolkata", "Not/AZone"]
)
# Around both DST changes of 2026 in New York, and an ordinary night.
ARRIVALS = st.one_of(
    st.datetimes(
        min_value=dt.datetime(2026, 3, 7),  # noqa: DTZ001
        max_value=dt.datetime(2026, 3, 9),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    st.datetimes(
        min_value=dt.datetime(2026, 10, 31),  # noqa: DTZ001
        max_value=dt.datetime(2026, 11, 2),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    st.datetimes(
        min_value=dt.datetime(2026, 12, 1),  # noqa: DTZ001
        max_value=dt.datetime(2026, 12, 31),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
)


def assert_start_time_is_safe(facts, received: dt.datetime) -> None:
    if facts.started_at is not None:
        assert facts.started_at.utcoffset() == dt.timedelta(0)
        assert not facts.started_at_unclear
        assert facts.started_at_text, "a start time comes from words in the message"
        assert facts.started_at <= received + FUTURE_SLACK
    if facts.started_at_unclear:
        assert facts.started_at is None
        assert facts.started_at_text
        assert "started_at" in facts.missing()


def read(subject: str, body: str, received: dt.datetime, zone):
    facts = extract_facts(subject=subject, body=body, received_at=received, zone=zone)
    result = triage(
        subject=subject, body=body, facts=facts, business=None, received_at=received
    )
    return facts, result


@RUNS
@given(
    written=st.lists(WRITTEN_TIMES, min_size=1, max_size=3),
    received=ARRIVALS,
    zone=ZONES,
)
def test_written_times_are_read_safely_or_marked_unclear(written, received, zone):
    body = "Texts stopped " + ". Example call ".join(written) + "."

    facts, result = read("No texts", body, received, zone)

    assert_start_time_is_safe(facts, received)
    assert result.priority in {"P0", "P1", "P2"}


@RUNS
@given(
    subject=st.text(max_size=80),
    body=st.text(max_size=600),
    received=ARRIVALS,
    zone=ZONES,
)
def test_arbitrary_text_never_raises(subject, body, received, zone):
    facts, result = read(subject, body, received, zone)

    assert_start_time_is_safe(facts, received)
    assert result.priority in {"P0", "P1", "P2"}


@RUNS
@given(
    pieces=st.lists(
        st.one_of(
            WRITTEN_TIMES, st.text(alphabet="0123456789:/.-+ ()xAPMapm", max_size=20)
        ),
        max_size=8,
    ),
    received=ARRIVALS,
    zone=ZONES,
)
def test_times_mixed_with_number_noise_never_raise(pieces, received, zone):
    body = " ".join(pieces)

    facts, result = read(body[:60], body, received, zone)

    assert_start_time_is_safe(facts, received)
    assert result.priority in {"P0", "P1", "P2"}
