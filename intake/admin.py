from email import policy
from email.parser import BytesParser

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models.functions import Length, Substr
from django.http import Http404, StreamingHttpResponse
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils.html import format_html

from .airtable import call_airtable_changed
from .models import Call, InboundEmail, WebhookEvent
from .tasks import call_airtable_sync

# The inbound email page shows this much of the raw message; the download
# reads it from the database in slices of the second size.
RAW_PREVIEW_BYTES = 64 * 1024
RAW_DOWNLOAD_SLICE_BYTES = 1024 * 1024

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

    def has_add_permission(self, request) -> bool:
        # Mail arrives through the inbound webhook or `ingest_email`, which
        # parse and date it; a hand-made row would be neither.
        return False

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

    def get_queryset(self, request):
        # A message can be tens of megabytes: no page loads it whole, only
        # its start and its size (raw_text) or the download streams it.
        return super().get_queryset(request).defer("raw")

    def get_urls(self):
        raw = path(
            "<path:object_id>/raw/",
            self.admin_site.admin_view(self.raw_download),
            name=f"{self.opts.app_label}_{self.opts.model_name}_raw",
        )
        return [raw, *super().get_urls()]

    @admin.display(description="raw message")
    def raw_text(self, obj):
        if obj.pk is None:
            return "-"
        head, size = _raw_slice(obj.pk, start=0, length=RAW_PREVIEW_BYTES)
        head = bytes(head)
        try:
            headers = BytesParser(policy=policy.compat32).parsebytes(head)
            preview = head.decode(headers.get_content_charset() or "utf-8", "replace")
        except (LookupError, ValueError):
            preview = head.decode("utf-8", "replace")

        download = reverse(
            f"{self.admin_site.name}:intake_inboundemail_raw", args=[obj.pk]
        )
        if size > len(head):
            note = format_html(
                "Showing the first {} of {}. "
                "<a href='{}'>Download the whole message (.eml)</a>",
                filesizeformat(len(head)),
                filesizeformat(size),
                download,
            )
        else:
            note = format_html("<a href='{}'>Download the message (.eml)</a>", download)
        return format_html(
            "<p>{}</p><pre style='white-space:pre-wrap'>{}</pre>", note, preview
        )

    def raw_download(self, request, object_id):
        """The whole message as it arrived, streamed a slice at a time."""
        inbound_email = self.get_object(request, unquote(object_id))
        if inbound_email is None:
            raise Http404("No such inbound email.")
        if not self.has_view_permission(request, inbound_email):
            raise PermissionDenied
        _, size = _raw_slice(inbound_email.pk, start=0, length=0)

        def slices():
            for start in range(0, size, RAW_DOWNLOAD_SLICE_BYTES):
                part, _ = _raw_slice(
                    inbound_email.pk, start=start, length=RAW_DOWNLOAD_SLICE_BYTES
                )
                yield bytes(part)

        response = StreamingHttpResponse(slices(), content_type="message/rfc822")
        response["Content-Length"] = str(size)
        response["Content-Disposition"] = (
            f'attachment; filename="inbound-email-{inbound_email.pk}.eml"'
        )
        return response


def _raw_slice(pk: int, *, start: int, length: int) -> tuple[bytes, int]:
    """`length` bytes of a stored message from `start` (0-based), and its size.

    Only the slice leaves the database, not the whole message.
    """
    return (
        InboundEmail.objects.filter(pk=pk)
        .annotate(raw_part=Substr("raw", start + 1, length), raw_size=Length("raw"))
        .values_list("raw_part", "raw_size")
        .get()
    )


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    """Every provider webhook as stored; a failed one says why in the list."""

    list_display = [
        "received_at",
        "provider",
        "kind",
        "event_id",
        "status",
        "attempts",
        "processed_at",
        "last_error_short",
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

    @admin.display(description="last error")
    def last_error_short(self, obj):
        return obj.last_error[:80]


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
