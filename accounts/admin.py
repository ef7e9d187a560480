from django.contrib import admin

from .models import Business, Contact, OnCallContact, PhoneLine, PortalUser


class PhoneLineInline(admin.TabularInline):
    model = PhoneLine
    extra = 0


class ContactInline(admin.TabularInline):
    model = Contact
    extra = 0


class OnCallContactInline(admin.TabularInline):
    model = OnCallContact
    extra = 0
    ordering = ["order"]


@admin.register(Business)
class BusinessAdmin(admin.ModelAdmin):
    list_display = ["name", "time_zone", "hours_display", "high_value", "lines"]
    list_filter = ["high_value", "time_zone"]
    search_fields = ["name", "phone_lines__number", "contacts__email"]
    inlines = [PhoneLineInline, ContactInline, OnCallContactInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("phone_lines")

    @admin.display(description="phone lines")
    def lines(self, obj):
        return ", ".join(line.number for line in obj.phone_lines.all())


@admin.register(PhoneLine)
class PhoneLineAdmin(admin.ModelAdmin):
    list_display = ["number", "business", "label"]
    search_fields = ["number", "business__name"]
    list_select_related = ["business"]


@admin.register(OnCallContact)
class OnCallContactAdmin(admin.ModelAdmin):
    list_display = ["name", "business", "phone", "email", "order"]
    search_fields = ["name", "phone", "email", "business__name"]
    list_select_related = ["business"]


@admin.register(PortalUser)
class PortalUserAdmin(admin.ModelAdmin):
    list_display = ["user", "business"]
    list_select_related = ["user", "business"]
    search_fields = ["user__username", "business__name"]
