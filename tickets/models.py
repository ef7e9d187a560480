"""Support tickets, their messages and their history."""

import datetime as dt
import string

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

REQUIRED_FACTS = [
    "business_line",
    "started_at",
    "symptoms",
    "example_call",
    "workaround",
]


class Priority(models.TextChoices):
    P0 = "P0", "P0 - active outage or safety risk"
    P1 = "P1", "P1 - partial outage or severe degradation"
    P2 = "P2", "P2 - non-urgent, workaround exists"


class Escalation(models.TextChoices):
    HIGH_VALUE = "high_value"
    AFTER_HOURS = "after_hours"
    MANY_REPORTS = "many_reports"
    SLA_BREACHED = "sla_breached"


class Ticket(models.Model):
    class Status(models.TextChoices):
        NEW = "new"
        WAITING_ON_CUSTOMER = "waiting", "waiting on customer"
        OPEN = "open"
        RESOLVED = "resolved"
        CLOSED = "closed"

    reference = models.CharField(max_length=20, unique=True, blank=True)
    business = models.ForeignKey(
        "accounts.Business",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="tickets",
        help_text="Empty until the sender is matched to a business.",
    )
    requester_email = models.CharField(max_length=320, blank=True)
    requester_name = models.CharField(max_length=200, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    component = models.CharField(
        max_length=32, blank=True, help_text="The failing part, from triage."
    )

    # The five required facts. Each is empty until the customer gives it.
    business_line = models.CharField(max_length=20, blank=True, help_text="E.164")
    business_line_extension = models.CharField(max_length=10, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    started_at_text = models.CharField(max_length=200, blank=True)
    started_at_unclear = models.BooleanField(
        default=False, help_text="A time was given but could not be read safely."
    )
    symptoms = models.TextField(blank=True)
    example_call = models.CharField(
        max_length=64, blank=True, help_text="Caller number (E.164) or call id."
    )
    example_call_extension = models.CharField(max_length=10, blank=True)
    workaround = models.TextField(blank=True)

    priority = models.CharField(
        max_length=2, choices=Priority.choices, default=Priority.P2, db_index=True
    )
    priority_reasons = models.JSONField(default=list, blank=True)
    escalations = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.NEW, db_index=True
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tickets",
    )
    incident = models.ForeignKey(
        "incidents.Incident",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tickets",
    )
    received_at = models.DateTimeField(db_index=True)
    acknowledge_due = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    next_update_due = models.DateTimeField(null=True, blank=True)
    first_reply_sent_at = models.DateTimeField(null=True, blank=True)
    # The clock stops while we wait on the customer; what was left on each
    # due time is kept here and counts again from their answer.
    clock_paused_at = models.DateTimeField(
        null=True, blank=True, help_text="Set while the SLA clock is stopped."
    )
    clock_paused_total = models.DurationField(
        default=dt.timedelta(0), help_text="Time the SLA clock has stood still."
    )
    acknowledge_remaining = models.DurationField(null=True, blank=True)
    next_update_remaining = models.DurationField(null=True, blank=True)
    sla_breached_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="First missed due time."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.reference} {self.subject}"

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        if not self.reference:
            # Readable and stable: the row id offset so references start at 4
            # digits, e.g. AH-1042.
            self.reference = f"{settings.TICKET_REFERENCE_PREFIX}-{1000 + self.pk}"
            type(self).objects.filter(pk=self.pk).update(reference=self.reference)

    @property
    def missing_facts(self) -> list[str]:
        given = {
            "business_line": bool(self.business_line),
            "started_at": self.started_at is not None and not self.started_at_unclear,
            "symptoms": bool(self.symptoms.strip()),
            "example_call": bool(self.example_call),
            "workaround": bool(self.workaround.strip()),
        }
        return [fact for fact in REQUIRED_FACTS if not given[fact]]

    @property
    def clock_paused(self) -> bool:
        return self.clock_paused_at is not None

    @property
    def is_closed(self) -> bool:
        return self.status in (self.Status.RESOLVED, self.Status.CLOSED)


class TicketMessage(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "in", "from customer"
        OUTBOUND = "out", "to customer"
        NOTE = "note", "internal note"

    ticket = models.ForeignKey(
        Ticket, on_delete=models.CASCADE, related_name="messages"
    )
    direction = models.CharField(max_length=4, choices=Direction.choices)
    message_id = models.CharField(max_length=998, unique=True, null=True, blank=True)
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = models.TextField(blank=True)
    from_address = models.CharField(max_length=320, blank=True)
    to_address = models.CharField(max_length=320, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    body = models.TextField(blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    inbound_email = models.ForeignKey(
        "intake.InboundEmail", null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} on {self.ticket.reference}"


class TicketAttachment(models.Model):
    message = models.ForeignKey(
        TicketMessage, on_delete=models.CASCADE, related_name="attachments"
    )
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255)
    size = models.PositiveIntegerField()
    file = models.FileField(upload_to="attachments/%Y/%m/")

    def __str__(self) -> str:
        return self.filename


class TicketEvent(models.Model):
    """The ticket's history: each automatic or human step with its reason."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=40)
    detail = models.TextField(blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} on {self.ticket_id}"


class TicketAlert(models.Model):
    """One reminder or breach for one due time of one ticket.

    The unique constraint is what makes each alert happen once: a sweep
    that runs again, or a second beat running by mistake, finds the row and
    owes nothing more. A new due time (after a reply or a priority change)
    is a new promise and gets its own alerts.
    """

    class Kind(models.TextChoices):
        REMINDER = "reminder"
        BREACH = "breach"

    class Clock(models.TextChoices):
        ACKNOWLEDGE = "acknowledge"
        NEXT_UPDATE = "next_update", "next update"

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    clock = models.CharField(max_length=12, choices=Clock.choices)
    due_at = models.DateTimeField()
    priority = models.CharField(max_length=2, choices=Priority.choices)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticket", "kind", "clock", "due_at"],
                name="ticket_alert_once_per_due_time",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.clock} on {self.ticket_id}"


# What a reply script may say, and what each placeholder becomes.
SCRIPT_PLACEHOLDERS = {
    "next_update": "next update time, in the customer's zone",
    "reference": "the ticket reference, e.g. AH-1042",
    "workaround": "the workaround we offer (manual callback by on-call)",
    "business": "the business's name",
    "name": "the requester's name",
}


def script_placeholder_errors(body: str) -> list[str]:
    """What is wrong with a script's placeholders, for the agent editing it."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(body) if name]
    except ValueError as error:
        return [f"{error}; write a literal brace as {{{{ or }}}}"]
    return [
        f"unknown placeholder {{{name}}}; use one of "
        + ", ".join(f"{{{known}}}" for known in SCRIPT_PLACEHOLDERS)
        for name in dict.fromkeys(fields)
        if name not in SCRIPT_PLACEHOLDERS
    ]


class ReplyScript(models.Model):
    """A support script agents start a reply from; editable in admin."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    body = models.TextField(
        help_text="Placeholders: "
        + ", ".join(
            f"{{{name}}} ({what})" for name, what in SCRIPT_PLACEHOLDERS.items()
        )
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = script_placeholder_errors(self.body)
        if errors:
            raise ValidationError({"body": errors})

    def render(self, values: dict[str, str]) -> str:
        """The body with every placeholder filled; raises on a bad body."""
        return self.body.format_map(
            {name: values.get(name, "") for name in SCRIPT_PLACEHOLDERS}
        )
