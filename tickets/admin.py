from django.contrib import admin
from django.db.models import JSONField
from django.forms import Textarea

from .models import Ticket, TicketAttachment, TicketEvent, TicketMessage


class TicketMessageInline(admin.StackedInline):
    model = TicketMessage
    extra = 0
    fields = ["created_at", "direction", "from_address", "subject", "body"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class TicketEventInline(admin.TabularInline):
    model = TicketEvent
    extra = 0
    fields = ["created_at", "kind", "detail", "actor"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = [
        "reference",
        "received_at",
        "priority",
        "escalation_tags",
        "status",
        "business",
        "subject",
        "missing",
        "acknowledge_due",
        "incident",
    ]
    list_filter = ["priority", "status", "component", "business"]
    search_fields = [
        "reference",
        "subject",
        "requester_email",
        "business__name",
        "example_call",
        "business_line",
    ]
    date_hierarchy = "received_at"
    list_select_related = ["business", "incident"]
    raw_id_fields = ["incident", "owner"]
    readonly_fields = ["reference", "priority_reasons", "created_at", "updated_at"]
    formfield_overrides = {JSONField: {"widget": Textarea(attrs={"rows": 2})}}
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "reference",
                    ("business", "status", "owner"),
                    ("requester_name", "requester_email"),
                    "subject",
                    ("priority", "component", "incident"),
                    "priority_reasons",
                    "escalations",
                ]
            },
        ),
        (
            "Required facts",
            {
                "fields": [
                    ("business_line", "business_line_extension"),
                    ("started_at", "started_at_unclear", "started_at_text"),
                    "symptoms",
                    ("example_call", "example_call_extension"),
                    "workaround",
                ]
            },
        ),
        (
            "Promises",
            {
                "fields": [
                    "received_at",
                    ("acknowledge_due", "acknowledged_at"),
                    "next_update_due",
                    "first_reply_sent_at",
                ]
            },
        ),
    ]
    inlines = [TicketMessageInline, TicketEventInline]

    @admin.display(description="escalations")
    def escalation_tags(self, obj):
        return ", ".join(obj.escalations)

    @admin.display(description="missing facts")
    def missing(self, obj):
        return ", ".join(obj.missing_facts) or "-"


class TicketAttachmentInline(admin.TabularInline):
    model = TicketAttachment
    extra = 0
    readonly_fields = ["filename", "content_type", "size", "file"]


@admin.register(TicketMessage)
class TicketMessageAdmin(admin.ModelAdmin):
    list_display = ["ticket", "direction", "from_address", "subject", "created_at"]
    list_filter = ["direction"]
    search_fields = ["ticket__reference", "message_id", "subject", "from_address"]
    list_select_related = ["ticket"]
    raw_id_fields = ["ticket", "inbound_email", "author"]
    inlines = [TicketAttachmentInline]
