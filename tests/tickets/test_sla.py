import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from accounts.models import Business
from tickets.sla import due_times, next_update_after

NY = ZoneInfo("America/New_York")


def _business(**overrides):
    fields = {
        "name": "Harbor",
        "time_zone": "America/New_York",
        "open_days": [0, 1, 2, 3, 4],
        "opens_at": dt.time(8),
        "closes_at": dt.time(18),
    }
    return Business(**(fields | overrides))


def _ny(*args):
    return dt.datetime(*args, tzinfo=NY)


@pytest.mark.parametrize(
    ("priority", "ack_minutes", "update_minutes"),
    [("P0", 10, 30), ("P1", 60, 240)],
)
def test_p0_and_p1_run_on_the_wall_clock_day_or_night(
    priority, ack_minutes, update_minutes
):
    received = _ny(2026, 12, 5, 23, 52)  # a Saturday night
    due = due_times(priority=priority, received_at=received, business=_business())
    assert due.acknowledge_by == received + dt.timedelta(minutes=ack_minutes)
    assert due.next_update_by == received + dt.timedelta(minutes=update_minutes)


def test_p2_on_friday_evening_is_due_at_the_end_of_monday_hours():
    received = _ny(2026, 12, 4, 19, 30)  # Friday, after closing
    due = due_times(priority="P2", received_at=received, business=_business())
    assert due.acknowledge_by == _ny(2026, 12, 7, 18, 0)


def test_p2_during_hours_is_due_at_the_same_time_next_business_day():
    received = _ny(2026, 12, 8, 14, 0)  # Tuesday afternoon
    due = due_times(priority="P2", received_at=received, business=_business())
    assert due.acknowledge_by == _ny(2026, 12, 9, 14, 0)


def test_p2_business_day_counts_the_business_zone_not_utc():
    chicago = ZoneInfo("America/Chicago")
    business = _business(time_zone="America/Chicago")
    received = dt.datetime(2026, 12, 9, 15, 10, tzinfo=dt.UTC)  # 09:10 in Chicago
    due = due_times(priority="P2", received_at=received, business=business)
    assert due.acknowledge_by == dt.datetime(2026, 12, 10, 9, 10, tzinfo=chicago)


def test_p2_across_the_spring_forward_weekend_keeps_wall_clock_hours():
    received = _ny(2026, 3, 6, 17, 0)  # Friday before DST starts on Mar 8
    due = due_times(priority="P2", received_at=received, business=_business())
    assert due.acknowledge_by == _ny(2026, 3, 9, 17, 0)
    # Counted in open hours, the weekend's missing hour changes nothing.
    assert due.acknowledge_by - received == dt.timedelta(days=3, hours=-1)


def test_p2_across_the_fall_back_weekend_keeps_wall_clock_hours():
    received = _ny(2026, 10, 30, 17, 0)  # Friday before DST ends on Nov 1
    due = due_times(priority="P2", received_at=received, business=_business())
    assert due.acknowledge_by == _ny(2026, 11, 2, 17, 0)


def test_p2_for_a_six_day_business_counts_saturday():
    received = _ny(2026, 12, 4, 19, 30)
    business = _business(open_days=[0, 1, 2, 3, 4, 5], opens_at=dt.time(7))
    due = due_times(priority="P2", received_at=received, business=business)
    assert due.acknowledge_by == _ny(2026, 12, 5, 18, 0)


def test_p2_without_a_business_uses_weekday_office_hours_in_new_york():
    received = _ny(2026, 12, 5, 10, 0)  # Saturday
    due = due_times(priority="P2", received_at=received, business=None)
    assert due.acknowledge_by == _ny(2026, 12, 7, 18, 0)


def test_next_update_after_a_sent_update():
    sent = _ny(2026, 12, 8, 1, 0)
    assert next_update_after(priority="P0", moment=sent, business=None) == _ny(
        2026, 12, 8, 1, 30
    )
    assert next_update_after(priority="P2", moment=sent, business=_business()) == _ny(
        2026, 12, 8, 18, 0
    )


def test_a_business_with_no_open_days_is_refused_clearly():
    with pytest.raises(ValueError, match="no open hours"):
        due_times(
            priority="P2",
            received_at=_ny(2026, 12, 8, 1, 0),
            business=_business(
                open_days=[6], opens_at=dt.time(9), closes_at=dt.time(9)
            ),
        )
