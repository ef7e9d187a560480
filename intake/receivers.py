"""Anymail's `inbound` signal: store the message, queue its processing.

The receiver only stores and queues; turning the message into a ticket
happens in a task after commit, so the ESP gets its answer quickly and a
failure later loses nothing (the raw message is already kept).
"""

import hashlib
import json
import logging
from email import encoders

from django.db import transaction

from .inbound_webhooks import UNREADABLE_ERRORS, form_fields
from .models import InboundEmail
from .services import inbound_email_store, inbound_email_store_unreadable

logger = logging.getLogger(__name__)

# Where each ESP's post carries the message exactly as it arrived, when the
# ESP is set to send raw MIME.
RAW_FORM_FIELDS = ("body-mime", "email")


def inbound_email_received(sender, event, esp_name, **kwargs):
    """Keep the message, then queue `inbound_email_process_task` on commit."""
    from .tasks import inbound_email_process_task

    esp = esp_name.lower()
    with transaction.atomic():
        try:
            raw = raw_message(event)
        except UNREADABLE_ERRORS as exc:
            inbound_email_store_unreadable(
                body=_request_body(event),
                esp=esp,
                reason=f"message could not be serialised: {type(exc).__name__}: {exc}",
            )
            return
        inbound_email, _ = inbound_email_store(raw=raw, esp=esp)
        # A retried delivery of a message still pending queues it again: the
        # first queueing may be what failed. Processing is idempotent.
        if inbound_email.status == InboundEmail.Status.PENDING:
            transaction.on_commit(
                lambda: inbound_email_process_task.delay(inbound_email.pk)
            )


def raw_message(event) -> bytes:
    """The message's bytes: the ESP's raw MIME if it sent one, else rebuilt."""
    esp_event = event.esp_event
    if isinstance(esp_event, dict):
        raw = esp_event.get("RawEmail")
        if raw:
            return raw.encode("utf-8")
    elif hasattr(esp_event, "POST"):
        fields = form_fields(esp_event)
        for name in RAW_FORM_FIELDS:
            if fields.get(name):
                return fields[name]
            if esp_event.POST.get(name):
                return esp_event.POST[name].encode("utf-8")
    message = event.message
    if message.get("Message-ID") is None:
        # A rebuilt message gets fresh MIME boundaries on every delivery, so
        # a hash of its bytes would differ; key a retry on its content.
        message["Message-ID"] = f"<{_content_digest(message)}@no-message-id.invalid>"
    _encode_binary_parts(message)
    return message.as_bytes()


def _encode_binary_parts(message) -> None:
    """Base64 each rebuilt attachment that Anymail left as raw bytes.

    Anymail decodes the ESP's attachments into parts with no transfer
    encoding; writing them out rewrites their line endings, which corrupts
    any binary file (a screenshot loses a byte per CR LF in it).
    """
    for part in message.walk():
        if part.is_multipart() or part.get_content_maintype() == "message":
            continue
        if part.get("Content-Transfer-Encoding") is not None:
            continue
        if part.get_content_maintype() != "text" or part.is_attachment():
            encoders.encode_base64(part)


def _content_digest(message) -> str:
    digest = hashlib.sha256()
    for name in ("From", "To", "Cc", "Subject", "Date"):
        digest.update(str(message.get(name, "")).encode("utf-8", "replace") + b"\0")
    for part in message.walk():
        if not part.is_multipart():
            digest.update((part.get_payload(decode=True) or b"") + b"\0")
    return digest.hexdigest()[:40]


def _request_body(event) -> bytes:
    esp_event = event.esp_event
    if hasattr(esp_event, "body"):
        return esp_event.body
    return json.dumps(esp_event, sort_keys=True).encode("utf-8")
