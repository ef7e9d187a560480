"""The outbox: every SMS or email we owe someone, and what became of it."""

from django.db import models


class Notification(models.Model):
    """One message owed to one recipient on one channel.

    Written in the same transaction as the fact that causes it and sent after
    commit. `dedupe_key` makes the cause idempotent: the same (reason,
    recipient, channel) for the same source is owed once, however often the
    cause is replayed.
    """

    class Channel(models.TextChoices):
        SMS = "sms", "SMS"
        EMAIL = "email"

    class Reason(models.TextChoices):
        CALL_SUMMARY = "call_summary", "call summary"
        TICKET_REPLY = "ticket_reply", "ticket reply"
        FIRST_REPLY = "first_reply", "first reply"
        INCIDENT_UPDATE = "incident_update", "incident update"
        P0_PAGE = "p0_page", "P0 page"
        SLA_ALERT = "sla_alert", "SLA alert"
        OPS_ALERT = "ops_alert", "operations alert"

    class State(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent", "sent (awaiting delivery report)"
        DELIVERED = "delivered"
        FAILED = "failed", "failed (will retry)"
        UNDELIVERABLE = "undeliverable"
        SUPPRESSED = "suppressed", "suppressed (recipient opted out or bounced)"
        LOGGED = "logged", "logged (no provider configured)"
        # An email fallback not sent because its SMS was confirmed delivered
        # before the email was claimed (notifications.fallback).
        CANCELLED = "cancelled", "cancelled (its SMS was delivered first)"

    channel = models.CharField(max_length=8, choices=Channel.choices)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    recipient = models.CharField(max_length=320)
    sender = models.CharField(max_length=320, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    body = models.TextField()
    headers = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=255, unique=True)

    state = models.CharField(
        max_length=16, choices=State.choices, default=State.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    provider_message_id = models.CharField(max_length=998, blank=True, db_index=True)
    last_error = models.TextField(blank=True)
    last_error_code = models.CharField(max_length=16, blank=True)
    # Twilio's latest delivery report for the message (queued, sent,
    # delivered, undelivered, failed); a report never moves it backwards.
    delivery_status = models.CharField(max_length=16, blank=True)
    # Delivery reports of "unreachable" so far; each one costs a re-send.
    delivery_failures = models.PositiveIntegerField(default=0)
    # When the email fallback was owed, or found to have nobody to go to.
    fallback_checked_at = models.DateTimeField(null=True, blank=True)
    fallback_of = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="fallback",
    )

    call = models.ForeignKey(
        "intake.Call", null=True, blank=True, on_delete=models.SET_NULL
    )
    ticket = models.ForeignKey(
        "tickets.Ticket", null=True, blank=True, on_delete=models.SET_NULL
    )
    incident = models.ForeignKey(
        "incidents.Incident", null=True, blank=True, on_delete=models.SET_NULL
    )

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} {self.reason} #{self.pk}"


class Suppression(models.Model):
    """An address we must stop writing to: a hard bounce or an SMS opt-out.

    An SMS opt-out (STOP) applies to one sender number only, so `sender` is
    part of the key; an email bounce leaves `sender` empty.
    """

    channel = models.CharField(max_length=8, choices=Notification.Channel.choices)
    address = models.CharField(max_length=320)
    sender = models.CharField(max_length=320, blank=True)
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "address", "sender"], name="suppression_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.address}"


class Heartbeat(models.Model):
    """Last time a worker or beat proved it was alive."""

    name = models.CharField(max_length=40, unique=True)
    last_seen = models.DateTimeField()

    def __str__(self) -> str:
        return self.name
