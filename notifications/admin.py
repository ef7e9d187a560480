from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from .models import Heartbeat, Notification, Suppression


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "channel",
        "reason",
        "recipient",
        "state",
        "delivery_status",
        "attempts",
        "next_attempt_at",
        "last_error_code",
        "fallback_link",
    ]
    list_filter = ["state", "delivery_status", "channel", "reason"]
    list_select_related = ["fallback", "fallback_of"]
    search_fields = ["recipient", "provider_message_id", "dedupe_key", "body"]
    date_hierarchy = "created_at"
    raw_id_fields = ["call", "ticket", "incident", "fallback_of"]
    readonly_fields = [
        "dedupe_key",
        "provider_message_id",
        "attempts",
        "sent_at",
        "delivered_at",
        "last_error",
        "last_error_code",
        "delivery_status",
        "delivery_failures",
        "fallback_checked_at",
        "fallback_link",
        "created_at",
    ]

    @admin.display(description="fallback")
    def fallback_link(self, notification: Notification) -> str:
        """The email that replaced this SMS, or the SMS this email replaces."""
        fallback = getattr(notification, "fallback", None)
        if fallback is not None:
            return _notification_link(fallback, label="email")
        if notification.fallback_of_id:
            return _notification_link(notification.fallback_of, label="for SMS")
        return "-"


def _notification_link(notification: Notification, *, label: str) -> str:
    url = reverse("admin:notifications_notification_change", args=[notification.pk])
    return format_html(
        '<a href="{}">{} #{} ({})</a>', url, label, notification.pk, notification.state
    )


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ["address", "channel", "sender", "reason", "created_at"]
    list_filter = ["channel"]
    search_fields = ["address", "sender"]


@admin.register(Heartbeat)
class HeartbeatAdmin(admin.ModelAdmin):
    list_display = ["name", "last_seen"]
