"""Admin for incidents: the timeline, the linked tickets, posting an update.

Status and the promised next update move only through an update (the
"Post an update" page), so every customer-facing change is checked by the
never-say check and reaches the affected businesses. The form is thin: the
work is in incidents.services.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from tickets.models import Ticket
from tickets.sla import next_update_after

from . import services
from .models import Incident, IncidentClockAlert, IncidentUpdate


class IncidentUpdateForm(forms.Form):
    status = forms.ChoiceField(choices=Incident.Status.choices)
    body = forms.CharField(
        label="Words to the customers",
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 90}),
        help_text="{next_update} becomes the next-update time in each "
        "business's own zone ({reference}: the ticket reference, {workaround}: "
        "the manual callback). Without {next_update}, a 'Next update by' line "
        "is added. Empty with 'resolved': the resolved script.",
    )
    next_update_at = forms.DateTimeField(
        label="Next update by (UTC)",
        required=False,
        widget=forms.DateTimeInput(format="%Y-%m-%d %H:%M"),
        help_text="Required for every customer-facing update except a "
        "resolution; the incident clock holds you to it.",
    )
    customer_facing = forms.BooleanField(
        required=False,
        initial=True,
        help_text="Untick for an internal note: no one is told, the promise "
        "stays as it is.",
    )
    send_anyway = forms.BooleanField(
        label="Send anyway despite the never-say check", required=False
    )
    override_reason = forms.CharField(
        label="Why send it anyway",
        required=False,
        max_length=500,
        help_text="Required with 'send anyway'; kept on the update and logged.",
    )

    def clean(self):
        data = super().clean()
        if data.get("send_anyway") and not (data.get("override_reason") or "").strip():
            self.add_error("override_reason", "Say why it should be sent anyway.")
        return data


class IncidentAdminForm(forms.ModelForm):
    class Meta:
        model = Incident
        fields = [
            "title",
            "component",
            "components",
            "priority",
            "owner",
            "impact",
            "affected_businesses",
            "follow_up",
        ]

    def clean_component(self):
        component = self.cleaned_data.get("component") or ""
        if component:
            open_one = (
                Incident.objects.filter(component=component)
                .exclude(status=Incident.Status.RESOLVED)
                .exclude(pk=self.instance.pk)
                .first()
            )
            if open_one is not None:
                raise forms.ValidationError(
                    f"Incident #{open_one.pk} is open for this component; "
                    "post updates there."
                )
        return component


class IncidentUpdateInline(admin.StackedInline):
    model = IncidentUpdate
    extra = 0
    fields = [
        "created_at",
        "status",
        "customer_facing",
        "body",
        "next_update_at",
        "author",
        "override_reason",
    ]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class LinkedTicketInline(admin.TabularInline):
    model = Ticket
    fk_name = "incident"
    verbose_name = "linked ticket"
    fields = ["reference", "business", "priority", "escalations", "status"]
    readonly_fields = fields
    show_change_link = True
    can_delete = False
    extra = 0

    def has_add_permission(self, request, obj=None):
        return False


class IncidentClockAlertInline(admin.TabularInline):
    model = IncidentClockAlert
    fields = ["created_at", "kind", "due_at", "detail"]
    readonly_fields = fields
    can_delete = False
    extra = 0

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    form = IncidentAdminForm
    change_form_template = "admin/incidents/incident/change_form.html"
    list_display = [
        "id",
        "title",
        "component",
        "priority",
        "status",
        "owner",
        "opened_at",
        "next_update_due",
    ]
    list_filter = ["status", "priority", "component", "opened_by_health_check"]
    search_fields = ["title", "impact", "affected_businesses__name"]
    date_hierarchy = "opened_at"
    filter_horizontal = ["affected_businesses"]
    list_select_related = ["owner"]
    readonly_fields = [
        "status",
        "opened_at",
        "next_update_due",
        "resolved_at",
        "opened_by_health_check",
    ]
    inlines = [IncidentUpdateInline, LinkedTicketInline, IncidentClockAlertInline]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.opened_at = timezone.now()
            obj.next_update_due = next_update_after(
                priority=obj.priority, moment=obj.opened_at, business=None
            )
            if obj.component and obj.component not in obj.components:
                obj.components = [obj.component, *obj.components]
        super().save_model(request, obj, form, change)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/post-update/",
                self.admin_site.admin_view(self.post_update_view),
                name="incidents_incident_post_update",
            ),
            *super().get_urls(),
        ]

    def post_update_view(self, request, object_id):
        """Post an update: the service checks it, moves the incident, tells."""
        incident = self.get_object(request, unquote(object_id))
        if incident is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, incident):
            raise PermissionDenied
        form = IncidentUpdateForm(
            request.POST or None, initial=self._update_initial(request, incident)
        )
        findings = []
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                update = services.incident_post_update(
                    incident=incident,
                    author=request.user,
                    status=data["status"],
                    body=data["body"],
                    next_update_at=data["next_update_at"],
                    customer_facing=data["customer_facing"],
                    override_reason=data["override_reason"]
                    if data["send_anyway"]
                    else "",
                )
            except services.GuardrailBlocked as blocked:
                findings = blocked.findings
                form.add_error(
                    "body",
                    "Not sent: the never-say check found words we can't stand "
                    "behind (below). Change them, or tick 'send anyway' and say "
                    "why.",
                )
            except services.IncidentUpdateRefused as refused:
                form.add_error(None, f"Not sent: {refused}")
            else:
                told = (
                    "sent to the affected businesses"
                    if update.customer_facing
                    else "kept as an internal note"
                )
                messages.success(request, f"Update {update.pk} {told}.")
                return HttpResponseRedirect(
                    reverse("admin:incidents_incident_change", args=[incident.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Post an update on incident #{incident.pk}",
            "opts": self.opts,
            "original": incident,
            "form": form,
            "findings": findings,
            "script_statuses": Incident.Status.choices,
            "has_view_permission": True,
        }
        return TemplateResponse(
            request, "admin/incidents/incident/post_update.html", context
        )

    def _update_initial(self, request, incident: Incident) -> dict:
        chosen = request.GET.get("script", "")
        status = chosen if chosen in Incident.Status.values else incident.status
        now = timezone.now().replace(second=0, microsecond=0)
        return {
            "status": status,
            "body": services.update_script(status=status),
            # The priority's cadence from now: what the clock will hold.
            "next_update_at": None
            if status == Incident.Status.RESOLVED
            else next_update_after(
                priority=incident.priority, moment=now, business=None
            ),
            "customer_facing": True,
        }
