from django.contrib import admin

from .models import Incident, IncidentUpdate


class IncidentUpdateInline(admin.StackedInline):
    model = IncidentUpdate
    extra = 0
    fields = ["created_at", "status", "customer_facing", "body", "next_update_at"]


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "title",
        "priority",
        "status",
        "owner",
        "opened_at",
        "next_update_due",
    ]
    list_filter = ["status", "priority", "opened_by_health_check"]
    search_fields = ["title", "impact", "affected_businesses__name"]
    date_hierarchy = "opened_at"
    filter_horizontal = ["affected_businesses"]
    list_select_related = ["owner"]
    inlines = [IncidentUpdateInline]
