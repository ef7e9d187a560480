"""The promises clock: when a ticket must be acknowledged and next updated.

From the field guide: P0 acknowledge within 10 minutes, update every 30; P1
within 1 hour, every 4 hours; P2 within 1 business day, daily. A P2 business
day counts the business's own open hours in its own zone: a P2 that arrives
on Friday evening is due by the end of Monday's opening hours, not Saturday.
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
        if business is None or not business.open_days:
            return cls(ZoneInfo(DEFAULT_ZONE), tuple(DEFAULT_OPEN_DAYS), *DEFAULT_HOURS)
        return cls(
            business.zone,
            tuple(business.open_days),
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
        return DueTimes(received_at + ack, received_at + update)
    hours = OpenHours.of(business)
    acknowledge_by = hours.add_open_time(received_at, hours.business_day)
    return DueTimes(acknowledge_by, acknowledge_by)


def next_update_after(
    *, priority: str, moment: dt.datetime, business: Business | None
) -> dt.datetime:
    """When the update after one sent at `moment` is due."""
    if priority in WALL_CLOCK:
        return moment + WALL_CLOCK[priority][1]
    hours = OpenHours.of(business)
    return hours.add_open_time(moment, hours.business_day)
