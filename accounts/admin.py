from django import forms
from django.contrib import admin

from .forms import PausingAdminAuthenticationForm, answer_paused
from .models import WEEKDAYS, Business, Contact, OnCallContact, PhoneLine, PortalUser
from .validators import known_time_zones


def _zone_choices(current: str) -> list[tuple[str, str]]:
    choices = [(name, name) for name in sorted(known_time_zones())]
    if current and current not in known_time_zones():
        # A row stored before zones were checked: show what is there, so the
        # admin sees it and must pick a real zone to save.
        choices.insert(0, (current, f"{current} (not a known time zone)"))
    return choices


class BusinessAdminForm(forms.ModelForm):
    """Zones from a list, days as checkboxes; the model checks the values."""

    time_zone = forms.ChoiceField(help_text="IANA time zone, e.g. America/Chicago.")
    open_days = forms.TypedMultipleChoiceField(
        choices=list(enumerate(WEEKDAYS)),
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Days the business is open; none means after hours all week.",
    )

    class Meta:
        model = Business
        fields = [
            "name",
            "time_zone",
            "high_value",
            "open_days",
            "opens_at",
            "closes_at",
            "airtable_base_id",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = _zone_choices(self.instance.time_zone)
        if not isinstance(self.instance.open_days, list):
            # A stored non-list (e.g. {"x": 1}) would render as one unknown
            # value; start from no day ticked instead.
            self.initial["open_days"] = []

    def clean_open_days(self) -> list[int]:
        return sorted(set(self.cleaned_data["open_days"]))


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
    form = BusinessAdminForm
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


def _admin_login_answering_paused(login):
    def admin_login(request, extra_context=None):
        response = login(request, extra_context)
        context = getattr(response, "context_data", None) or {}
        return answer_paused(response, context.get("form"))

    return admin_login


# The admin's sign-in pauses guessing with the portal's counters
# (accounts.sign_in_throttle). AdminSite builds its login URL from
# `self.login`, read after the admin modules are loaded, so wrapping the
# site's own method here is enough and leaves the admin's page as it is.
admin.site.login_form = PausingAdminAuthenticationForm
admin.site.login = _admin_login_answering_paused(admin.site.login)
