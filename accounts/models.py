"""Businesses (the tenants), their phone lines and the people we reach."""

import datetime as dt
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import models

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


class Business(models.Model):
    name = models.CharField(max_length=200, unique=True)
    time_zone = models.CharField(max_length=64, default="America/New_York")
    high_value = models.BooleanField(default=False)
    # ISO weekday numbers (Mon=0) on which the business is open.
    open_days = models.JSONField(default=list, blank=True)
    opens_at = models.TimeField(default=dt.time(8, 0))
    closes_at = models.TimeField(default=dt.time(18, 0))
    airtable_base_id = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "businesses"

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def is_open_at(self, moment: dt.datetime) -> bool:
        """Whether `moment` falls inside business hours, in the business's zone."""
        local = moment.astimezone(self.zone)
        if local.weekday() not in self.open_days:
            return False
        return self.opens_at <= local.time() < self.closes_at

    @property
    def hours_display(self) -> str:
        days = ",".join(WEEKDAYS[d] for d in sorted(self.open_days)) or "closed"
        return f"{days} {self.opens_at:%H:%M}-{self.closes_at:%H:%M}"


class PhoneLine(models.Model):
    """A number the business routes to us; calls are matched to it."""

    business = models.ForeignKey(
        Business, on_delete=models.CASCADE, related_name="phone_lines"
    )
    number = models.CharField(max_length=20, unique=True, help_text="E.164")
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
    phone = models.CharField(max_length=20, blank=True, help_text="E.164")
    email = models.EmailField(blank=True)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["business", "order", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.business})"


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
