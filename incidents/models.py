"""Incidents: one owner, a customer-facing timeline, a promised next update."""

from django.conf import settings
from django.db import models

from tickets.models import Priority


class Component(models.TextChoices):
    CALL_INTAKE = "call_intake", "call intake"
    SMS = "sms", "SMS notifications"
    EMAIL = "email", "email notifications"
    AIRTABLE = "airtable", "Airtable writes"
    SUMMARIES = "summaries", "call summaries"
    PORTAL = "portal", "customer portal"


class Incident(models.Model):
    class Status(models.TextChoices):
        INVESTIGATING = "investigating"
        IDENTIFIED = "identified"
        MITIGATING = "mitigating"
        MONITORING = "monitoring"
        RESOLVED = "resolved"

    title = models.CharField(max_length=200)
    priority = models.CharField(max_length=2, choices=Priority.choices)
    status = models.CharField(
        max_length=16,
        choices=Status.choices,
        default=Status.INVESTIGATING,
        db_index=True,
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_incidents",
    )
    impact = models.TextField(blank=True)
    components = models.JSONField(default=list, blank=True)
    affected_businesses = models.ManyToManyField(
        "accounts.Business", blank=True, related_name="incidents"
    )
    opened_at = models.DateTimeField()
    next_update_due = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    follow_up = models.TextField(
        blank=True, help_text="Post-incident follow-up: impact and fix."
    )
    opened_by_health_check = models.BooleanField(default=False)

    class Meta:
        ordering = ["-opened_at"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"


class IncidentUpdate(models.Model):
    incident = models.ForeignKey(
        Incident, on_delete=models.CASCADE, related_name="updates"
    )
    status = models.CharField(max_length=16, choices=Incident.Status.choices)
    body = models.TextField()
    customer_facing = models.BooleanField(default=True)
    next_update_at = models.DateTimeField(null=True, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.status} update on incident {self.incident_id}"
