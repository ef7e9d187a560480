"""Admin for tickets: the agent's desk.

The change page carries the agent's reply (from a script, with a next-update
time in the customer's zone, checked by the never-say check) and routes
priority and status changes through the SLA clock. The form is thin: the
work is in tickets.services.
"""

import copy
import datetime as dt
import logging

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import JSONField, TextField
from django.forms import Textarea
from django.utils import timezone

from accounts.validators import validate_e164, validate_e164_or_call_id

from . import services, sla
from .models import (
    Escalation,
    ReplyScript,
    Ticket,
    TicketAlert,
    TicketAttachment,
    TicketEvent,
    TicketMessage,
)

logger = logging.getLogger(__name__)

# A time typed a little ahead of the server's clock is a slow clock, not an
# absurd value.
CLOCK_SLACK = dt.timedelta(minutes=5)
# A start more than this long before the report is a typo (a year, a month).
OLDEST_START = dt.timedelta(days=366)
# Times the ticket's own clock keeps; none may come before its receipt.
AFTER_RECEIPT = [
    "acknowledge_due",
    "acknowledged_at",
    "next_update_due",
    "first_reply_sent_at",
]


class ZonedDateTimeField(forms.DateTimeField):
    """A date and time typed and shown in one zone (the customer's).

    A wall time that happens twice or not at all in that zone is refused
    with Django's own message rather than guessed.
    """

    def __init__(self, *, zone=None, **kwargs):
        self.zone = zone
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if self.zone is None:
            return super().prepare_value(value)
        with timezone.override(self.zone):
            return super().prepare_value(value)

    def to_python(self, value):
        if self.zone is None:
            return super().to_python(value)
        with timezone.override(self.zone):
            return super().to_python(value)


class TicketAdminForm(forms.ModelForm):
    """The ticket's fields plus the agent's reply (model given by the admin)."""

    # Set by TicketAdmin.get_form from the request's ?script=.
    script_slug = ""

    reply_script = forms.ChoiceField(
        label="Start from script",
        required=False,
        help_text="Choosing a script reloads the page with it rendered for "
        "this ticket; unsaved changes on the page are lost.",
    )
    reply_body = forms.CharField(
        label="Reply to the customer",
        required=False,
        widget=Textarea(attrs={"rows": 8, "cols": 90}),
        help_text="Sent by email on save, threaded on the ticket. Leave empty "
        "to save the ticket without replying.",
    )
    reply_next_update = ZonedDateTimeField(
        label="Next update by",
        required=False,
        widget=forms.DateTimeInput(format="%Y-%m-%d %H:%M"),
        help_text="Every customer update carries one; pre-filled from the SLA "
        "clock, in the customer's zone.",
    )
    reply_send_anyway = forms.BooleanField(
        label="Send anyway despite the never-say check", required=False
    )
    reply_override_reason = forms.CharField(
        label="Why send it anyway",
        required=False,
        max_length=500,
        help_text="Required with 'send anyway'; logged on the ticket.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "escalations" in self.fields:
            self.fields["escalations"].help_text = (
                'A list of tags, e.g. ["high_value"]; known tags: '
                + ", ".join(Escalation.values)
                + "."
            )
        ticket = self.instance
        if ticket.pk is None:
            return
        zone = services.ticket_display_zone(ticket=ticket)
        field = self.fields["reply_next_update"]
        field.zone = zone
        field.label = f"Next update by ({zone.key})"
        scripts = list(ReplyScript.objects.values_list("slug", "name"))
        self.fields["reply_script"].choices = [("", "---------"), *scripts]
        self.fields["reply_script"].widget.attrs["onchange"] = (
            "window.location.search = '?script=' + encodeURIComponent(this.value)"
        )
        if self.is_bound:
            return
        next_update = services.next_update_suggested(ticket=ticket)
        # The minute shown is the minute promised: never a second past the
        # SLA's limit because the form rounds.
        next_update = next_update.replace(second=0, microsecond=0)
        self.initial["reply_next_update"] = next_update
        if self.script_slug in dict(scripts):
            self.initial["reply_script"] = self.script_slug
            self.initial["reply_body"] = services.ticket_reply_render(
                ticket=ticket, slug=self.script_slug, next_update_at=next_update
            )

    # Fields intake fills are checked when an agent changes them: a value
    # stored by intake must not stop an agent saving something else.

    def _unchanged(self, field: str, value) -> bool:
        # Compared with the stored row, not the form's changed_data: that
        # trusts the initial value the browser posts back.
        if self.instance.pk is None:
            return False
        stored = getattr(self.instance, field)
        if isinstance(value, dt.datetime) and isinstance(stored, dt.datetime):
            # The form shows whole seconds.
            return value.replace(microsecond=0) == stored.replace(microsecond=0)
        return value == stored

    def clean_escalations(self):
        value = self.cleaned_data.get("escalations")
        if value is None:
            # An emptied box: no tags (the column holds a list, never null).
            return []
        if self._unchanged("escalations", value):
            return value
        known = "use one of: " + ", ".join(Escalation.values) + "."
        if not isinstance(value, list):
            raise ValidationError(
                f'Escalations are a list of tags, e.g. ["high_value"]; {known}'
            )
        errors = []
        for index, tag in enumerate(value):
            if not isinstance(tag, str) or tag not in Escalation.values:
                errors.append(f"Not saved: unknown escalation tag {tag!r}; {known}")
            elif tag in value[:index]:
                errors.append(f"{tag!r} is listed twice; each tag once ({known})")
        if errors:
            raise ValidationError(errors)
        return sorted(value)

    def clean_business_line(self):
        value = self.cleaned_data.get("business_line") or ""
        if value and not self._unchanged("business_line", value):
            validate_e164(value)
        return value

    def clean_example_call(self):
        value = self.cleaned_data.get("example_call") or ""
        if value and not self._unchanged("example_call", value):
            validate_e164_or_call_id(value)
        return value

    def _check_times(self, data: dict) -> None:
        """Refuse times that cannot be: received or started in the future, a
        start years before the report, a due time before the receipt."""
        now = timezone.now()
        received = data.get("received_at") or self.instance.received_at
        if data.get("received_at") and received > now + CLOCK_SLACK:
            self.add_error(
                "received_at",
                "A ticket cannot be received in the future; give the time the "
                "customer wrote or called.",
            )
        started = data.get("started_at")
        if started and not self._unchanged("started_at", started):
            if started > now + CLOCK_SLACK:
                self.add_error(
                    "started_at",
                    "The start time is in the future; check the date and the "
                    "time zone the customer gave.",
                )
            elif received and started < received - OLDEST_START:
                self.add_error(
                    "started_at",
                    "The start time is more than a year before the ticket was "
                    "received; check the year.",
                )
        if received is None:
            return
        for field in AFTER_RECEIPT:
            value = data.get(field)
            if field in self.fields and value and value < received:
                self.add_error(
                    field,
                    f"{self.fields[field].label or field} cannot be before the "
                    f"ticket was received ({received:%Y-%m-%d %H:%M %Z}).",
                )

    def clean(self):
        data = super().clean()
        self._check_times(data)
        body = (data.get("reply_body") or "").strip()
        if not body or self.instance.pk is None:
            return data
        if data.get("reply_next_update") is None:
            if "reply_next_update" not in self.errors:
                self.add_error(
                    "reply_next_update",
                    "Every customer update carries a next-update time.",
                )
            return data
        reason = (data.get("reply_override_reason") or "").strip()
        if data.get("reply_send_anyway") and not reason:
            self.add_error("reply_override_reason", "Say why it should be sent anyway.")
            return data
        if not data.get("requester_email"):
            self.add_error("reply_body", "Not sent: the ticket has no address.")
            return data
        # Checked against the priority and business as they are being saved,
        # so a reply saved with a rise to P0 is held to P0's next update.
        ticket = copy.copy(self.instance)
        ticket.priority = data.get("priority") or ticket.priority
        ticket.business = data.get("business", ticket.business)
        try:
            services.ticket_reply_check(
                ticket=ticket,
                body=body,
                next_update_at=data["reply_next_update"],
                override_reason=reason if data.get("reply_send_anyway") else "",
            )
        except services.ReplyBlocked as blocked:
            self.add_error(
                "reply_body",
                [
                    f'Not sent: "{finding.words}": {finding.why}.'
                    for finding in blocked.findings
                ]
                + [
                    "Change the words, or tick 'send anyway' and say why "
                    "(it is logged)."
                ],
            )
        except services.ReplyInvalid as invalid:
            self.add_error("reply_next_update", f"Not sent: {invalid}.")
        return data


class SlaBreachedFilter(admin.SimpleListFilter):
    title = "SLA"
    parameter_name = "sla"

    def lookups(self, request, model_admin):
        return [
            ("breached", "SLA breached"),
            ("paused", "clock paused (waiting on customer)"),
            ("running", "clock running"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "breached":
            return queryset.filter(sla_breached_at__isnull=False)
        if self.value() == "paused":
            return queryset.filter(clock_paused_at__isnull=False)
        if self.value() == "running":
            return queryset.filter(clock_paused_at__isnull=True).exclude(
                status__in=[Ticket.Status.RESOLVED, Ticket.Status.CLOSED]
            )
        return queryset


class TicketMessageInline(admin.StackedInline):
    model = TicketMessage
    extra = 0
    fields = ["created_at", "direction", "from_address", "subject", "body"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class TicketAlertInline(admin.TabularInline):
    model = TicketAlert
    extra = 0
    fields = ["created_at", "kind", "clock", "priority", "due_at", "detail"]
    readonly_fields = fields

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
    form = TicketAdminForm
    list_display = [
        "reference",
        "received_at",
        "priority",
        "escalation_tags",
        "status",
        "business",
        "subject",
        "missing",
        "sla_clock",
        "incident",
    ]
    list_filter = [SlaBreachedFilter, "priority", "status", "component", "business"]
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
    # The clock moves through priority, status and replies, never by hand.
    readonly_fields = [
        "reference",
        "priority_reasons",
        "sla_clock",
        "received_at",
        "acknowledge_due",
        "acknowledged_at",
        "next_update_due",
        "first_reply_sent_at",
        "clock_paused_at",
        "clock_paused_total",
        "sla_breached_at",
        "created_at",
        "updated_at",
    ]
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
                    "sla_clock",
                    "received_at",
                    ("acknowledge_due", "acknowledged_at"),
                    "next_update_due",
                    "first_reply_sent_at",
                    ("clock_paused_at", "clock_paused_total"),
                    "sla_breached_at",
                ]
            },
        ),
    ]
    reply_fieldset = (
        "Reply to the customer",
        {
            "fields": [
                "reply_script",
                "reply_body",
                "reply_next_update",
                ("reply_send_anyway", "reply_override_reason"),
            ],
            "description": "Checked on save by the never-say check; a reply "
            "with findings is not sent.",
        },
    )
    inlines = [TicketMessageInline, TicketAlertInline, TicketEventInline]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is None:
            # A ticket added by hand (a phone report) says when it came in;
            # its clock starts from there.
            fields.remove("received_at")
        return fields

    def get_changeform_initial_data(self, request):
        return {
            "received_at": timezone.now(),
            **super().get_changeform_initial_data(request),
        }

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            fieldsets.insert(1, self.reply_fieldset)
        return fieldsets

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        # A new class per request (modelform_factory), so this is safe.
        form.script_slug = request.GET.get("script", "")
        return form

    def save_model(self, request, obj, form, change):
        """Save the fields; priority, status and the reply go through the clock."""
        if not change:
            # Limitation: a ticket added here gets its due times but no first
            # reply and no P0 page; those belong to intake (ticket_open_*).
            due = sla.due_times(
                priority=obj.priority,
                received_at=obj.received_at,
                business=obj.business,
            )
            obj.acknowledge_due = due.acknowledge_by
            obj.next_update_due = due.next_update_by
            super().save_model(request, obj, form, change)
            TicketEvent.objects.create(
                ticket=obj,
                kind="opened",
                actor=request.user,
                detail=f"added in admin by user {request.user.pk}",
            )
            return
        stored = Ticket.objects.get(pk=obj.pk)
        priority, status = obj.priority, obj.status
        obj.priority, obj.status = stored.priority, stored.status
        super().save_model(request, obj, form, change)
        if priority != stored.priority:
            services.ticket_priority_change(
                ticket=obj,
                priority=priority,
                reason=f"changed by {request.user} in admin",
                actor=request.user,
            )
        if status != stored.status:
            services.ticket_status_change(ticket=obj, status=status, actor=request.user)
        data = form.cleaned_data
        body = (data.get("reply_body") or "").strip()
        if body:
            try:
                message = services.ticket_reply_send(
                    ticket=obj,
                    author=request.user,
                    body=body,
                    next_update_at=data["reply_next_update"],
                    override_reason=data.get("reply_override_reason", "")
                    if data.get("reply_send_anyway")
                    else "",
                )
            except services.ReplyError as error:
                # The form checked it; only a change between the check and
                # the save (a second agent, the clock) lands here.
                self.message_user(request, f"Reply not sent: {error}", messages.ERROR)
                obj.refresh_from_db()
                return
            self.message_user(
                request,
                f"Reply queued to the customer (message {message.pk}).",
                messages.SUCCESS,
            )
        obj.refresh_from_db()

    @admin.display(description="SLA clock")
    def sla_clock(self, obj):
        if obj.is_closed:
            return f"stopped: {obj.status}"
        if obj.clock_paused:
            return (
                f"paused since {obj.clock_paused_at:%Y-%m-%d %H:%M} UTC "
                "(waiting on customer)"
            )
        due = obj.next_update_due
        if obj.acknowledged_at is None and obj.acknowledge_due:
            due = min(filter(None, [obj.acknowledge_due, obj.next_update_due]))
        if due is None:
            return "-"
        state = "BREACHED" if obj.sla_breached_at else "due"
        return f"{state} {services.next_update_display(ticket=obj, moment=due)}"

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


@admin.register(ReplyScript)
class ReplyScriptAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "updated_at"]
    search_fields = ["name", "slug", "body"]
    # Wide enough to read a whole script.
    formfield_overrides = {
        TextField: {"widget": Textarea(attrs={"rows": 8, "cols": 90})}
    }


@admin.register(TicketAlert)
class TicketAlertAdmin(admin.ModelAdmin):
    list_display = ["ticket", "kind", "clock", "priority", "due_at", "created_at"]
    list_filter = ["kind", "clock", "priority"]
    search_fields = ["ticket__reference"]
    list_select_related = ["ticket"]
    readonly_fields = [
        "ticket",
        "kind",
        "clock",
        "priority",
        "due_at",
        "created_at",
        "detail",
    ]

    def has_add_permission(self, request):
        return False
