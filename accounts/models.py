"""Businesses (the tenants), their phone lines and the people we reach."""

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from .validators import (
    WEEKDAY_NUMBERS,
    known_time_zones,
    validate_e164,
    validate_open_days,
    validate_time_zone,
)

logger = logging.getLogger(__name__)

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
DEFAULT_TIME_ZONE = "America/New_York"


class Business(models.Model):
    name = models.CharField(max_length=200, unique=True)
    time_zone = models.CharField(
        max_length=64,
        default=DEFAULT_TIME_ZONE,
        validators=[validate_time_zone],
        help_text="IANA time zone, e.g. America/Chicago.",
    )
    high_value = models.BooleanField(default=False)
    # ISO weekday numbers (Mon=0) on which the business is open.
    open_days = models.JSONField(
        default=list, blank=True, validators=[validate_open_days]
    )
    opens_at = models.TimeField(default=dt.time(8, 0))
    closes_at = models.TimeField(default=dt.time(18, 0))
    airtable_base_id = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "businesses"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        # The field's own check skips values Django counts as empty; null
        # is not one of ours (an empty list is: closed every day).
        if self.open_days in (None, "", {}, ()):
            try:
                validate_open_days(self.open_days)
            except ValidationError as error:
                errors["open_days"] = error.messages
        if self.opens_at and self.closes_at and self.opens_at >= self.closes_at:
            errors["closes_at"] = [
                "The closing time must come after the opening time, on the same day."
            ]
        if errors:
            raise ValidationError(errors)

    # The properties below also serve rows stored before the field checks
    # existed (or written past them with .update()): a bad row must never
    # take down a page or set a customer's email aside.

    @property
    def zone(self) -> ZoneInfo:
        if self.time_zone in known_time_zones():
            return ZoneInfo(self.time_zone)
        logger.warning(
            "business %s has an unknown time zone %r; %s used until it is fixed",
            self.pk,
            self.time_zone,
            DEFAULT_TIME_ZONE,
        )
        return ZoneInfo(DEFAULT_TIME_ZONE)

    @property
    def open_day_numbers(self) -> list[int]:
        """The valid weekday numbers among `open_days`, sorted, each once."""
        days = self.open_days if isinstance(self.open_days, list) else []
        return sorted(
            {
                day
                for day in days
                if isinstance(day, int)
                and not isinstance(day, bool)
                and day in WEEKDAY_NUMBERS
            }
        )

    def is_open_at(self, moment: dt.datetime) -> bool:
        """Whether `moment` falls inside business hours, in the business's zone."""
        local = moment.astimezone(self.zone)
        if local.weekday() not in self.open_day_numbers:
            return False
        return self.opens_at <= local.time() < self.closes_at

    @property
    def hours_display(self) -> str:
        days = ",".join(WEEKDAYS[d] for d in self.open_day_numbers) or "closed"
        try:
            validate_open_days(self.open_days)
        except ValidationError:
            days = f"{days} (invalid open days: {self.open_days!r})"
        return f"{days} {self.opens_at:%H:%M}-{self.closes_at:%H:%M}"


class PhoneLine(models.Model):
    """A number the business routes to us; calls are matched to it."""

    business = models.ForeignKey(
        Business, on_delete=models.CASCADE, related_name="phone_lines"
    )
    number = models.CharField(
        max_length=20,
        unique=True,
        validators=[validate_e164],
        help_text="E.164, e.g. +14155550142",
    )
    label = models.CharField(max_length=100, blank=True)

    def __str__(self) -> str:
        return self.number


class Contact(models.Model):
    """An address that writes to support on the business's behalf."""

    business = models.ForeignKey(
        Business, on_delete=models.CASCADE, related_name="contacts"
    )
    email = models.EmailField()
    name = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["business", "email"], name="contact_unique_per_business"
            )
        ]

    def __str__(self) -> str:
        return self.email


class OnCallContact(models.Model):
    """Who receives call summaries, in `order` (lowest first)."""

    business = models.ForeignKey(
        Business, on_delete=models.CASCADE, related_name="on_call_contacts"
    )
    name = models.CharField(max_length=200)
    phone = models.CharField(
        max_length=20,
        blank=True,
        validators=[validate_e164],
        help_text="E.164, e.g. +14155550142",
    )
    email = models.EmailField(blank=True)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["business", "order", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.business})"

    def clean(self) -> None:
        if not self.phone and not self.email:
            raise ValidationError(
                "An on-call contact needs a phone or an email to be reached."
            )


class PortalUser(models.Model):
    """Links a login to the business whose tickets and incidents it may see."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="portal"
    )
    business = models.ForeignKey(
        Business, on_delete=models.CASCADE, related_name="portal_users"
    )

    def __str__(self) -> str:
        return f"{self.user} @ {self.business}"
