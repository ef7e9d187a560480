from email import policy
from email.parser import BytesParser

from django.contrib import admin
from django.db import transaction
from django.utils.html import format_html

from .airtable import call_airtable_changed
from .models import Call, InboundEmail, WebhookEvent
from .tasks import call_airtable_sync

# What the Airtable record shows (intake.airtable.call_airtable_fields).
AIRTABLE_SOURCE_FIELDS = (
    "caller_number",
    "dialled_number",
    "status",
    "started_at",
    "ended_at",
    "duration_seconds",
    "summary",
    "urgency",
)


@admin.register(InboundEmail)
class InboundEmailAdmin(admin.ModelAdmin):
    """Every support email as it arrived; rejected ones wait here for an agent."""

    list_display = [
        "received_at",
        "from_address",
        "subject",
        "status",
        "reason_short",
        "ticket",
    ]
    list_filter = ["status", "esp"]
    search_fields = ["message_id", "from_address", "subject"]
    date_hierarchy = "received_at"
    list_select_related = ["ticket"]
    raw_id_fields = ["ticket"]
    readonly_fields = [
        "message_id",
        "esp",
        "from_address",
        "subject",
        "received_at",
        "processed_at",
        "raw_text",
    ]
    exclude = ["raw"]

    @admin.display(description="reason")
    def reason_short(self, obj):
        return obj.reason[:80]

    @admin.display(description="raw message")
    def raw_text(self, obj):
        raw = bytes(obj.raw)
        try:
            headers = BytesParser(policy=policy.compat32).parsebytes(raw)
            preview = raw.decode(headers.get_content_charset() or "utf-8", "replace")
        except (LookupError, ValueError):
            preview = raw.decode("utf-8", "replace")
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", preview)


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = [
        "received_at",
        "provider",
        "kind",
        "event_id",
        "status",
        "attempts",
        "processed_at",
    ]
    list_filter = ["provider", "kind", "status"]
    search_fields = ["event_id"]
    date_hierarchy = "received_at"
    readonly_fields = [
        "provider",
        "kind",
        "event_id",
        "payload",
        "received_at",
        "processed_at",
        "attempts",
        "last_error",
    ]


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = [
        "provider_call_id",
        "business",
        "caller_number",
        "status",
        "started_at",
        "duration_seconds",
        "airtable_state",
        "airtable_last_error_short",
    ]
    list_filter = ["status", "airtable_state", "business"]
    search_fields = ["provider_call_id", "caller_number", "dialled_number"]
    date_hierarchy = "created_at"
    list_select_related = ["business"]
    readonly_fields = [
        "provider_call_id",
        "last_sequence",
        "airtable_record_id",
        "airtable_attempts",
        "airtable_last_error",
        "airtable_leased_until",
        "created_at",
        "updated_at",
    ]

    @admin.display(description="Airtable error")
    def airtable_last_error_short(self, obj):
        return obj.airtable_last_error[:80]

    def save_model(self, request, obj, form, change):
        """An agent's correction reaches Airtable too: the call is due again."""
        if not change or any(
            field in form.changed_data for field in AIRTABLE_SOURCE_FIELDS
        ):
            call_airtable_changed(obj)
        super().save_model(request, obj, form, change)
        if obj.airtable_state == Call.SyncState.PENDING:
            call_id = obj.pk
            transaction.on_commit(
                lambda: call_airtable_sync.delay(call_id), robust=True
            )
