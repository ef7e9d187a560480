"""The ESP's inbound webhook: Anymail's views, hardened against bad mail.

Anymail parses each ESP's post and sends the `inbound` signal (received in
`intake.receivers`). These subclasses change what happens when a post is a
message we cannot read: Anymail would answer 500, the ESP would retry and
finally drop the mail. Here the post is stored as a rejected InboundEmail
for an agent and answered 200; only a post that is no message at all gets
a 4xx. Basic auth (and Mailgun's signature) stay Anymail's.
"""

import json
import logging
import re
import warnings
from email import policy
from email.errors import MessageError
from email.parser import BytesParser

from anymail.exceptions import AnymailConfigurationError, AnymailNotSupportedWarning
from anymail.inbound import AnymailInboundMessage
from anymail.webhooks.mailgun import MailgunInboundWebhookView
from anymail.webhooks.postmark import PostmarkInboundWebhookView
from anymail.webhooks.sendgrid import SendGridInboundWebhookView
from django.conf import settings
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt

from .email import decode_text
from .services import inbound_email_store_unreadable

logger = logging.getLogger(__name__)

# What a post that is a message, but an unreadable one, raises in Anymail's
# parsing or in ours.
UNREADABLE_ERRORS = (
    ValueError,
    TypeError,
    LookupError,
    UnicodeError,
    MessageError,
    AssertionError,
)
MESSAGE_ID_HEADER_RE = re.compile(r"^Message-ID:\s*(<[^<>\s]+>)", re.I | re.M)


def form_fields(request) -> dict[str, bytes]:
    """The multipart/form-data fields of a post as the bytes that were sent.

    Django decodes every field as UTF-8; an ESP that posts a field in its
    original charset needs the bytes to decode it right.
    """
    content_type = request.META.get("CONTENT_TYPE", "")
    if not content_type.startswith("multipart/form-data"):
        return {}
    document = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    parsed = BytesParser(policy=policy.default).parsebytes(document + request.body)
    fields = {}
    for part in parsed.iter_parts() if parsed.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        if name and part.get_filename() is None:
            fields[str(name)] = part.get_payload(decode=True) or b""
    return fields


class HardenedInboundMixin:
    """Store what cannot be read instead of answering 500."""

    def post(self, request, *args, **kwargs):
        # Read the body before any field: SendGrid's charset handling and
        # the unreadable-message store both need the bytes later.
        body = request.body
        self.run_validators(request)
        if not self.looks_like_message(request):
            logger.warning("inbound webhook esp=%s: not a message", self.esp_name)
            return HttpResponseBadRequest("not an inbound message")
        try:
            events = self.parse_events(request)
        except AnymailConfigurationError as exc:
            logger.warning("inbound webhook esp=%s: %s", self.esp_name, exc)
            return HttpResponseBadRequest("not an inbound message")
        except UNREADABLE_ERRORS as exc:
            inbound_email_store_unreadable(
                body=body,
                esp=self.esp_name.lower(),
                reason=f"{self.esp_name} post could not be read as a message: "
                f"{type(exc).__name__}: {exc}",
                message_id=self.payload_message_id(request),
            )
            return HttpResponse()
        for event in events:
            self.signal.send(sender=self.__class__, event=event, esp_name=self.esp_name)
        return HttpResponse()

    def looks_like_message(self, request) -> bool:
        raise NotImplementedError

    def payload_message_id(self, request) -> str:
        return ""


class MailgunInboundView(HardenedInboundMixin, MailgunInboundWebhookView):
    def looks_like_message(self, request) -> bool:
        if request.content_type == "application/json":
            return True  # Anymail names the misconfiguration; answered 400.
        return "body-mime" in request.POST or "message-headers" in request.POST

    def payload_message_id(self, request) -> str:
        try:
            headers = json.loads(request.POST.get("message-headers", "[]"))
            for name, value in headers:
                if str(name).lower() == "message-id":
                    return str(value).strip()
        except (ValueError, TypeError):
            pass
        found = MESSAGE_ID_HEADER_RE.search(request.POST.get("body-mime", ""))
        return found.group(1) if found else ""


class PostmarkInboundView(HardenedInboundMixin, PostmarkInboundWebhookView):
    MESSAGE_KEYS = ("RawEmail", "FromFull", "Headers", "TextBody", "HtmlBody")

    def looks_like_message(self, request) -> bool:
        try:
            payload = json.loads(request.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return False
        return isinstance(payload, dict) and any(
            key in payload for key in self.MESSAGE_KEYS
        )

    def payload_message_id(self, request) -> str:
        payload = json.loads(request.body.decode("utf-8"))
        for header in payload.get("Headers") or []:
            if isinstance(header, dict) and header.get("Name", "").lower() == (
                "message-id"
            ):
                return str(header.get("Value", "")).strip()
        found = MESSAGE_ID_HEADER_RE.search(payload.get("RawEmail") or "")
        return found.group(1) if found else ""


class SendGridInboundView(HardenedInboundMixin, SendGridInboundWebhookView):
    def __init__(self, **kwargs):
        # Anymail warns on every request that its SendGrid support is no
        # longer official; our own tests cover the inbound format we use.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AnymailNotSupportedWarning)
            super().__init__(**kwargs)

    def looks_like_message(self, request) -> bool:
        return "headers" in request.POST or "email" in request.POST

    def payload_message_id(self, request) -> str:
        text = request.POST.get("headers") or request.POST.get("email") or ""
        found = MESSAGE_ID_HEADER_RE.search(text)
        return found.group(1) if found else ""

    def message_from_sendgrid_parsed(self, request):
        """Decode text and html by SendGrid's charsets map, never failing.

        Anymail decodes strictly by the map: an unknown charset name or
        bytes that do not fit it raise, and the ESP sees a 500. Here each
        field falls back to UTF-8 and then windows-1252 instead.
        """
        try:
            charsets = json.loads(request.POST.get("charsets") or "{}")
        except ValueError:
            charsets = {}
        if not isinstance(charsets, dict):
            charsets = {}
        raw_fields = form_fields(request)
        bodies = {}
        for name in ("text", "html"):
            if name in raw_fields:
                bodies[name] = decode_text(raw_fields[name], charsets.get(name))
            else:
                bodies[name] = request.POST.get(name)
        return AnymailInboundMessage.construct(
            raw_headers=request.POST.get("headers", ""),
            text=bodies["text"],
            html=bodies["html"],
            attachments=self._attachments(request),
        )

    def _attachments(self, request):
        try:
            info = json.loads(request.POST["attachment-info"])
        except (KeyError, ValueError):
            return None
        attachments = []
        for attachment_id in sorted(info):
            file = request.FILES.get(attachment_id)
            if file is None:
                continue  # Django drops files with unsafe or empty names.
            attachments.append(
                AnymailInboundMessage.construct_attachment_from_uploaded_file(
                    file, content_id=(info[attachment_id] or {}).get("content-id")
                )
            )
        return attachments


INBOUND_VIEWS = {
    "mailgun": MailgunInboundView,
    "postmark": PostmarkInboundView,
    "sendgrid": SendGridInboundView,
}


@csrf_exempt
def inbound_email_webhook(request, esp: str):
    """Route to the configured ESP's inbound view; every other ESP is 404.

    The ESP is read per request, so a deployment (or a test) that changes
    ANYMAIL_ESP needs no new URLconf.
    """
    if esp != settings.ANYMAIL_ESP or esp not in INBOUND_VIEWS:
        raise Http404("no inbound webhook for this ESP")
    return INBOUND_VIEWS[esp].as_view()(request)
