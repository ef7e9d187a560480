"""The ESP's inbound webhook: Anymail's views, hardened against bad mail.

Anymail parses each ESP's post and sends the `inbound` signal (received in
`intake.receivers`). These subclasses change what happens when a post is a
message we cannot read: Anymail would answer 500, the ESP would retry and
finally drop the mail. Here an authenticated post that fails to become a
message, for any reason, is stored as a rejected InboundEmail for an agent
and answered 200; only a post that is no message at all (or fails the
webhook's authentication) gets a 4xx. Basic auth (and Mailgun's signature)
stay Anymail's.

Inbound mail is large: ESPs post messages of tens of MB (Postmark up to
35 MB). This webhook reads bodies up to settings.INBOUND_EMAIL_MAX_BYTES
itself, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE, which stays small for
every other view. A larger post is still recorded (its first bytes and its
size) for an agent.
"""

import logging
import re
import warnings
from email import policy
from email.errors import MessageError
from email.parser import BytesParser
from io import BytesIO

from anymail.exceptions import (
    AnymailConfigurationError,
    AnymailNotSupportedWarning,
    AnymailWebhookValidationFailure,
)
from anymail.inbound import AnymailInboundMessage
from anymail.webhooks.base import AnymailBasicAuthMixin
from anymail.webhooks.mailgun import MailgunInboundWebhookView
from anymail.webhooks.postmark import PostmarkInboundWebhookView
from anymail.webhooks.sendgrid import SendGridInboundWebhookView
from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponse, HttpResponseBadRequest, QueryDict
from django.http.multipartparser import MultiPartParserError
from django.utils.datastructures import MultiValueDict
from django.views.decorators.csrf import csrf_exempt

from .email import MESSAGE_ID_RE, decode_text
from .jsonbody import JsonBodyInvalid, JsonBodyUnstorable, json_body_parse
from .services import inbound_email_store_unreadable

logger = logging.getLogger(__name__)

# What a post that is a message, but an unreadable one, raises in Anymail's
# parsing or in ours; the receiver names these in its reason. The view
# sets aside any other exception too.
UNREADABLE_ERRORS = (
    ValueError,
    TypeError,
    LookupError,
    UnicodeError,
    MessageError,
    AssertionError,
)
# The database is down or gone: nothing can be kept, so the ESP must retry.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)
MESSAGE_ID_HEADER_RE = re.compile(r"^Message-ID:\s*(<[^<>\s]+>)", re.I | re.M)
# What an agent gets of a post over the size limit: enough for the headers
# of a raw message and the leading fields of a parsed one.
TOO_LARGE_KEPT_BYTES = 256 * 1024
READ_CHUNK_BYTES = 1024 * 1024


class InboundPostTooLarge(Exception):
    """The post's body is over settings.INBOUND_EMAIL_MAX_BYTES."""

    def __init__(self, head: bytes, size: int):
        super().__init__(f"post of {size} bytes")
        self.head = head
        self.size = size


def inbound_body_read(request, *, limit: int) -> bytes:
    """The request body, read up to `limit` bytes instead of Django's limit.

    Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) with
    RequestDataTooBig when `request.body` is first read; reading it here
    and keeping it where Django keeps a body it has read lets Anymail and
    Django's form parsing use it as usual. Raises InboundPostTooLarge with
    the first TOO_LARGE_KEPT_BYTES when the body is over `limit`.
    """
    if hasattr(request, "_body"):
        return request._body
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise InboundPostTooLarge(request.read(TOO_LARGE_KEPT_BYTES), declared)
    chunks, size = [], 0
    while size <= limit:
        chunk = request.read(min(READ_CHUNK_BYTES, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    body = b"".join(chunks)
    if size > limit:
        raise InboundPostTooLarge(body[:TOO_LARGE_KEPT_BYTES], max(size, declared))
    # Where HttpRequest.body keeps what it read (Django 5.2); from here on
    # request.body, request.POST and request.FILES read these bytes.
    request._body = body
    request._stream = BytesIO(body)
    return body


def _form_parts(body: bytes, content_type: str):
    """(name, filename or None, content type, bytes) of each form field."""
    document = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    parsed = BytesParser(policy=policy.default).parsebytes(document + body)
    for part in parsed.iter_parts() if parsed.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True) or b""
            yield str(name), part.get_filename(), part.get_content_type(), payload


def form_fields(request) -> dict[str, bytes]:
    """The multipart/form-data fields of a post as the bytes that were sent.

    Django decodes every field as UTF-8; an ESP that posts a field in its
    original charset needs the bytes to decode it right.
    """
    content_type = request.META.get("CONTENT_TYPE", "")
    if not content_type.startswith("multipart/form-data"):
        return {}
    return {
        name: payload
        for name, filename, _, payload in _form_parts(request.body, content_type)
        if filename is None
    }


def form_load(request) -> str:
    """Parse the post's form once; return why it cannot be read, or "".

    Django's parser refuses a form whose fields hold more than
    DATA_UPLOAD_MAX_MEMORY_SIZE (the whole message, when the ESP posts raw
    MIME); such a form is parsed here instead, with the same result.
    """
    try:
        request.POST  # noqa: B018 - parsed now so that failures are ours
        request.FILES  # noqa: B018
    except RequestDataTooBig:
        post, files = QueryDict(mutable=True), MultiValueDict()
        content_type = request.META.get("CONTENT_TYPE", "")
        try:
            for name, filename, part_type, payload in _form_parts(
                request.body, content_type
            ):
                if filename is None:
                    post.appendlist(name, decode_text(payload, "utf-8"))
                else:
                    upload = SimpleUploadedFile(filename, payload, part_type)
                    files.appendlist(name, upload)
        except (MessageError, ValueError, TypeError, LookupError) as exc:
            request._post, request._files = QueryDict(), MultiValueDict()
            return f"form could not be read: {type(exc).__name__}: {exc}"
        post._mutable = False
        # Where HttpRequest keeps a parsed form (Django 5.2).
        request._post, request._files = post, files
    except (MultiPartParserError, SuspiciousOperation, BadRequest) as exc:
        request._post, request._files = QueryDict(), MultiValueDict()
        return f"form could not be read: {type(exc).__name__}: {exc}"
    return ""


def _json_string(head: str, key: str) -> str:
    found = re.search(rf'"{key}"\s*:\s*"((?:[^"\\]|\\.)*)"', head)
    if not found:
        return ""
    try:
        text = json_body_parse(f'"{found.group(1)}"')
    except JsonBodyInvalid:
        return ""
    return text if isinstance(text, str) else ""


def post_head_summary(head: bytes) -> tuple[str, str, str]:
    """(Message-ID, sender address, subject) read from the start of a post.

    For a post too large to parse: raw MIME shows its headers first, and
    the ESPs' parsed formats put sender and subject before the bodies.
    """
    text = head.decode("utf-8", "replace")
    found = MESSAGE_ID_HEADER_RE.search(text) or re.search(
        r'"Name"\s*:\s*"Message-ID"\s*,\s*"Value"\s*:\s*"(<[^<>\s"]+>)"', text, re.I
    )
    message_id = found.group(1) if found else ""
    sender = re.search(r"^From:.*?([^\s<>\"]+@[^\s<>\"]+)", text, re.I | re.M)
    address = sender.group(1) if sender else _json_string(text, "Email")
    subject = re.search(r"^Subject:[ \t]*(.*)$", text, re.I | re.M)
    form_subject = re.search(r'name="subject"\r?\n\r?\n(.*?)\r?\n', text)
    subject_text = (
        subject.group(1)
        if subject
        else form_subject.group(1)
        if form_subject
        else _json_string(text, "Subject")
    )
    return message_id, address.strip().lower(), subject_text.strip()


class HardenedInboundMixin:
    """Store what cannot be read instead of answering 500."""

    def post(self, request, *args, **kwargs):
        limit = settings.INBOUND_EMAIL_MAX_BYTES
        try:
            body = inbound_body_read(request, limit=limit)
        except InboundPostTooLarge as too_large:
            return self.post_too_large(request, too_large, limit)
        form_error = form_load(request)
        self.authenticate(request)
        if form_error:
            return self.set_aside(request, body, form_error)
        if not self.looks_like_message(request):
            logger.warning("inbound webhook esp=%s: not a message", self.esp_name)
            return HttpResponseBadRequest("not an inbound message")
        try:
            events = self.parse_events(request)
            for event in events:
                self.signal.send(
                    sender=self.__class__, event=event, esp_name=self.esp_name
                )
        except AnymailConfigurationError as exc:
            logger.warning("inbound webhook esp=%s: %s", self.esp_name, exc)
            return HttpResponseBadRequest("not an inbound message")
        except TRANSIENT_ERRORS:
            logger.exception("inbound webhook esp=%s: database", self.esp_name)
            return HttpResponse("try again later", status=503)
        except Exception as exc:  # noqa: BLE001 - whatever fails, keep the mail
            return self.set_aside(
                request,
                body,
                f"{self.esp_name} post could not be read as a message: "
                f"{type(exc).__name__}: {exc}",
            )
        return HttpResponse()

    def authenticate(self, request) -> None:
        """Anymail's checks; a check that crashes has authenticated nothing."""
        try:
            self.run_validators(request)
        except AnymailWebhookValidationFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - a crash in a check is a refusal
            logger.warning(
                "inbound webhook esp=%s: authentication could not be checked: %s",
                self.esp_name,
                type(exc).__name__,
            )
            raise AnymailWebhookValidationFailure(
                f"{self.esp_name} webhook authentication could not be checked"
            ) from exc

    def set_aside(self, request, body: bytes, reason: str) -> HttpResponse:
        """Keep the post raw, rejected with its reason; the ESP's job is done."""
        try:
            message_id = self.payload_message_id(request)
        except Exception:  # noqa: BLE001 - the id only dedupes retries
            message_id = ""
        found = MESSAGE_ID_RE.fullmatch(message_id.strip())
        _, from_address, subject = post_head_summary(body[:TOO_LARGE_KEPT_BYTES])
        inbound_email, _ = inbound_email_store_unreadable(
            body=body,
            esp=self.esp_name.lower(),
            reason=reason,
            message_id=found.group(0) if found else "",
            from_address=from_address,
            subject=subject,
        )
        return HttpResponse(f"set aside for an agent: inbound email {inbound_email.pk}")

    def post_too_large(
        self, request, too_large: InboundPostTooLarge, limit: int
    ) -> HttpResponse:
        """Record a post over the limit for an agent, if it is authenticated.

        Only basic auth can be checked without the whole body; a post that
        carries nothing else (Mailgun signing only) is refused with 413.
        """
        # Limitation: without basic auth configured an oversized post cannot
        # be authenticated, so it is refused (413) and not recorded.
        if not self.basic_auth:
            logger.warning(
                "inbound webhook esp=%s: post of %s bytes over the limit %s "
                "and no basic auth to check it: refused",
                self.esp_name,
                too_large.size,
                limit,
            )
            return HttpResponse("message too large", status=413)
        AnymailBasicAuthMixin.validate_request(self, request)
        message_id, from_address, subject = post_head_summary(too_large.head)
        inbound_email, _ = inbound_email_store_unreadable(
            body=too_large.head,
            esp=self.esp_name.lower(),
            reason=(
                f"post of {too_large.size} bytes is over the limit of {limit} bytes "
                f"(INBOUND_EMAIL_MAX_BYTES); only its first {len(too_large.head)} "
                "bytes are kept: ask the sender to send the attachments smaller"
            ),
            message_id=message_id,
            from_address=from_address,
            subject=subject,
        )
        return HttpResponse(f"set aside for an agent: inbound email {inbound_email.pk}")

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
            headers = json_body_parse(request.POST.get("message-headers", "[]"))
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
            payload = json_body_parse(request.body)
        except JsonBodyUnstorable:
            return True  # parse_events sets it aside, with the reason.
        except JsonBodyInvalid:
            return False
        return isinstance(payload, dict) and any(
            key in payload for key in self.MESSAGE_KEYS
        )

    def parse_events(self, request):
        # Anymail reads NaN, infinities and lone surrogates as Python does;
        # a post holding them is malformed JSON: the view sets it aside for
        # an agent with the reason.
        json_body_parse(request.body)
        return super().parse_events(request)

    def payload_message_id(self, request) -> str:
        payload = json_body_parse(request.body)
        headers = payload.get("Headers")
        for header in headers if isinstance(headers, list) else ():
            if not isinstance(header, dict):
                continue
            if str(header.get("Name", "")).lower() == "message-id":
                return str(header.get("Value", "")).strip()
        raw = payload.get("RawEmail")
        found = MESSAGE_ID_HEADER_RE.search(raw) if isinstance(raw, str) else None
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
            charsets = json_body_parse(request.POST.get("charsets") or "{}")
        except JsonBodyInvalid:
            charsets = {}
        if not isinstance(charsets, dict):
            charsets = {}
        charsets = {k: v for k, v in charsets.items() if isinstance(v, str)}
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
            info = json_body_parse(request.POST["attachment-info"])
        except (KeyError, JsonBodyInvalid):
            return None
        if not isinstance(info, dict):
            # Which files are attachments is unknown: the view sets the
            # message aside rather than drop them.
            raise ValueError("attachment-info is not a JSON object")
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
