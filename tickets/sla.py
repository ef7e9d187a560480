"""The promises clock: when a ticket must be acknowledged and next updated.

From the field guide: P0 acknowledge within 10 minutes, update every 30; P1
within 1 hour, every 4 hours; P2 within 1 business day, daily. A P2 business
day counts the business's own open hours in its own zone: a P2 that arrives
on Friday evening is due by the end of Monday's opening hours, not Saturday.

The clock stops while we wait on the customer for missing facts: what was
left on it is kept (wall-clock time for P0/P1, open time for P2) and counts
again from the customer's answer (`remaining_on_clock`, `due_after_resume`).
`tickets.sla_watch` reminds and escalates from the due times stored on the
ticket.
"""

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from accounts.models import Business

from .models import Priority

WALL_CLOCK = {
    Priority.P0: (dt.timedelta(minutes=10), dt.timedelta(minutes=30)),
    Priority.P1: (dt.timedelta(hours=1), dt.timedelta(hours=4)),
}
# Used for P2 when the ticket has no business yet (unknown sender).
DEFAULT_ZONE = "America/New_York"
DEFAULT_OPEN_DAYS = [0, 1, 2, 3, 4]
DEFAULT_HOURS = (dt.time(8, 0), dt.time(18, 0))
# How long before a due time its owner is reminded.
REMINDER_LEAD = {
    Priority.P0: dt.timedelta(minutes=5),
    Priority.P1: dt.timedelta(minutes=15),
    Priority.P2: dt.timedelta(hours=2),
}
# Waiting on the customer stops the clock for these priorities only: a P0 is
# an outage on our side, and we owe its updates whether or not they answer.
PAUSABLE = frozenset({Priority.P1, Priority.P2})


@dataclass(frozen=True)
class DueTimes:
    acknowledge_by: dt.datetime
    next_update_by: dt.datetime


@dataclass(frozen=True)
class OpenHours:
    zone: ZoneInfo
    days: tuple[int, ...]
    opens: dt.time
    closes: dt.time

    @classmethod
    def of(cls, business: Business | None) -> "OpenHours":
        # Only valid weekdays: a row stored before the business checks
        # existed (open days {"x": 1}) counts the default hours, never fails.
        days = business.open_day_numbers if business is not None else []
        if not days:
            return cls(ZoneInfo(DEFAULT_ZONE), tuple(DEFAULT_OPEN_DAYS), *DEFAULT_HOURS)
        return cls(
            business.zone,
            tuple(days),
            business.opens_at,
            business.closes_at,
        )

    def _window(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        # fold=0 and a round trip through UTC keep a wall time that falls in
        # a DST gap on a real instant instead of a time that never exists.
        opens = dt.datetime.combine(day, self.opens, self.zone)
        closes = dt.datetime.combine(day, self.closes, self.zone)
        return opens.astimezone(dt.UTC), closes.astimezone(dt.UTC)

    def add_open_time(self, start: dt.datetime, amount: dt.timedelta) -> dt.datetime:
        """The instant when `amount` of open time has passed since `start`."""
        start = start.astimezone(dt.UTC)
        remaining = amount
        day = start.astimezone(self.zone).date()
        # A business open at least one day a week reaches the end within a
        # few weeks of windows; the bound only guards a bad configuration.
        for _ in range(7 * 60):
            if day.weekday() in self.days:
                opens, closes = self._window(day)
                begin = max(opens, start)
                if begin < closes:
                    available = closes - begin
                    if remaining <= available:
                        return begin + remaining
                    remaining -= available
            day += dt.timedelta(days=1)
        raise ValueError("business has no open hours to count a business day in")

    def open_time_between(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """How much open time lies between `start` and `end`."""
        total = dt.timedelta(0)
        start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
        if end <= start:
            return total
        day = start.astimezone(self.zone).date()
        last = end.astimezone(self.zone).date()
        while day <= last:
            if day.weekday() in self.days:
                opens, closes = self._window(day)
                begin, finish = max(opens, start), min(closes, end)
                if begin < finish:
                    total += finish - begin
            day += dt.timedelta(days=1)
        return total

    @property
    def business_day(self) -> dt.timedelta:
        """One day's opening hours, as wall-clock time."""
        day = dt.date.min
        return dt.datetime.combine(day, self.closes) - dt.datetime.combine(
            day, self.opens
        )


def due_times(
    *, priority: str, received_at: dt.datetime, business: Business | None
) -> DueTimes:
    """Acknowledge-by and next-update-by for a ticket received at `received_at`."""
    if priority in WALL_CLOCK:
        ack, update = WALL_CLOCK[priority]
        # In UTC: Python adds to an aware local time on the wall clock, which
        # on a DST night lands an hour off (or on a time that never exists).
        start = received_at.astimezone(dt.UTC)
        return DueTimes(start + ack, start + update)
    hours = OpenHours.of(business)
    acknowledge_by = hours.add_open_time(received_at, hours.business_day)
    return DueTimes(acknowledge_by, acknowledge_by)


def next_update_after(
    *, priority: str, moment: dt.datetime, business: Business | None
) -> dt.datetime:
    """When the update after one sent at `moment` is due."""
    if priority in WALL_CLOCK:
        return moment.astimezone(dt.UTC) + WALL_CLOCK[priority][1]
    hours = OpenHours.of(business)
    return hours.add_open_time(moment, hours.business_day)


def remaining_on_clock(
    *, priority: str, moment: dt.datetime, due: dt.datetime, business: Business | None
) -> dt.timedelta:
    """What is left on a clock at `moment`: none once `due` has passed.

    P0/P1 count wall-clock time, P2 the business's open time, so a P2 paused
    over a weekend keeps the whole of Monday.
    """
    if due <= moment:
        return dt.timedelta(0)
    if priority in WALL_CLOCK:
        # In UTC: two times of one zone subtract as wall-clock times.
        return due.astimezone(dt.UTC) - moment.astimezone(dt.UTC)
    return OpenHours.of(business).open_time_between(moment, due)


def due_after_resume(
    *,
    priority: str,
    moment: dt.datetime,
    remaining: dt.timedelta,
    business: Business | None,
) -> dt.datetime:
    """The due time of a clock that resumes at `moment` with `remaining` left."""
    if remaining <= dt.timedelta(0):
        # It was already late when it stopped; it is late now.
        return moment
    if priority in WALL_CLOCK:
        return moment.astimezone(dt.UTC) + remaining
    return OpenHours.of(business).add_open_time(moment, remaining)
