from django.contrib import admin

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
        "attempts",
        "next_attempt_at",
        "last_error_code",
    ]
    list_filter = ["state", "channel", "reason"]
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
        "created_at",
    ]


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ["address", "channel", "sender", "reason", "created_at"]
    list_filter = ["channel"]
    search_fields = ["address", "sender"]


@admin.register(Heartbeat)
class HeartbeatAdmin(admin.ModelAdmin):
    list_display = ["name", "last_seen"]
