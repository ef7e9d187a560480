"""Incidents: one owner, a customer-facing timeline, a promised next update."""

from django.conf import settings
from django.db import models
from django.db.models import Q

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
    # The failing part this incident stands for, when it stands for one:
    # correlation and the health checks find the open incident by it.
    component = models.CharField(
        max_length=32, choices=Component.choices, blank=True, db_index=True
    )
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
        constraints = [
            # Two workers correlating reports of one part at the same moment
            # must not open two incidents for it; the service also takes a
            # lock, this is the backstop on every database.
            models.UniqueConstraint(
                fields=["component"],
                condition=~Q(status="resolved") & ~Q(component=""),
                name="incident_one_open_per_component",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def is_open(self) -> bool:
        return self.status != self.Status.RESOLVED


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
    # The never-say findings the author chose to send anyway, and why.
    guardrail_findings = models.JSONField(default=list, blank=True)
    override_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.status} update on incident {self.incident_id}"


class IncidentClockAlert(models.Model):
    """One reminder or escalation about one promised next-update time.

    Unique per (incident, kind, due time): a beat that runs twice, or two
    beats running by mistake, owe it once.
    """

    class Kind(models.TextChoices):
        REMINDER = "reminder", "reminder before the update is due"
        ESCALATION = "escalation", "escalation: the update is late"

    incident = models.ForeignKey(
        Incident, on_delete=models.CASCADE, related_name="clock_alerts"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    due_at = models.DateTimeField()
    notification = models.ForeignKey(
        "notifications.Notification",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    detail = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "kind", "due_at"],
                name="incident_clock_alert_once_per_due_time",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} for incident {self.incident_id} due {self.due_at}"
