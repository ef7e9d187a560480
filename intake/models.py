"""The inbox of everything the outside world sends us, and the calls."""

from django.db import models


class WebhookEvent(models.Model):
    """A webhook stored raw before anything else happens to it.

    Unique on (provider, event_id): a provider's retry of the same event
    finds the row and changes nothing.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSED = "processed"
        IGNORED = "ignored", "ignored (stale or duplicate)"
        FAILED = "failed"

    provider = models.CharField(max_length=40)
    kind = models.CharField(max_length=40, help_text="voice_status, sms_status, ...")
    event_id = models.CharField(max_length=200)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id"], name="webhook_event_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.event_id}"


class InboundEmail(models.Model):
    """A support email exactly as it arrived, kept whatever happens to it.

    A message that cannot be parsed or threaded stays here with its reason,
    listed for an agent; none is dropped.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSED = "processed"
        IGNORED = "ignored", "ignored (automatic mail)"
        REJECTED = "rejected", "set aside for an agent"

    message_id = models.CharField(max_length=998, unique=True)
    esp = models.CharField(max_length=40, blank=True)
    raw = models.BinaryField()
    from_address = models.CharField(max_length=320, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    received_at = models.DateTimeField(db_index=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    reason = models.TextField(blank=True)
    ticket = models.ForeignKey(
        "tickets.Ticket",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="inbound_emails",
    )
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return self.message_id


class Call(models.Model):
    """One call from the provider; created and updated only from its events."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RINGING = "ringing"
        IN_PROGRESS = "in-progress"
        COMPLETED = "completed"
        BUSY = "busy"
        NO_ANSWER = "no-answer"
        CANCELED = "canceled"
        FAILED = "failed"

    class SyncState(models.TextChoices):
        PENDING = "pending"
        SYNCED = "synced"
        FAILED = "failed", "failed (will retry)"
        # No Airtable key configured: the call is deliberately not mirrored.
        SKIPPED = "skipped", "skipped (Airtable not configured)"

    provider_call_id = models.CharField(max_length=64, unique=True)
    business = models.ForeignKey(
        "accounts.Business",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="calls",
    )
    dialled_number = models.CharField(max_length=20)
    caller_number = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    # Provider events can arrive out of order; only a later one moves the call.
    last_sequence = models.IntegerField(default=-1)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    summary = models.TextField(blank=True)
    urgency = models.CharField(max_length=16, blank=True)
    airtable_state = models.CharField(
        max_length=16, choices=SyncState.choices, default=SyncState.PENDING
    )
    airtable_record_id = models.CharField(max_length=32, blank=True)
    airtable_last_error = models.TextField(blank=True)
    airtable_attempts = models.PositiveIntegerField(default=0)
    airtable_next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Set while a push carries the call (intake.airtable), so no second push
    # of it is in flight at once.
    airtable_leased_until = models.DateTimeField(null=True, blank=True)
    # Airtable refused a request this call was in: it goes alone until it is
    # written, so a record Airtable will not take holds up no other call.
    airtable_push_alone = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The sweep's and each push's look-up of what is due; synced
            # calls, nearly all of them, stay out of the index.
            models.Index(
                fields=["airtable_next_attempt_at"],
                condition=models.Q(airtable_state__in=["pending", "failed"]),
                name="call_airtable_due",
            )
        ]

    def __str__(self) -> str:
        return self.provider_call_id
