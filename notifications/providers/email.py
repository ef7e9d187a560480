"""Email through Django's mail API (Anymail in production, locmem in tests).

Answers in our own types like the SMS provider: `EmailResult` on success,
`TransientProviderError` or `PermanentProviderError` on failure.
"""

import smtplib
from dataclasses import dataclass

from anymail.exceptions import (
    AnymailAPIError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
)
from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.message import make_msgid
from django.core.mail.utils import DNS_NAME

from .errors import PermanentProviderError, TransientProviderError

# Backends that only print or drop the message: the row is marked "logged",
# not "sent", so nobody believes a customer was told.
NON_SENDING_BACKENDS = frozenset(
    {
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.dummy.EmailBackend",
        "notifications.providers.email_log.LoggingEmailBackend",
    }
)


@dataclass(frozen=True)
class EmailResult:
    """The ESP's message id (or our Message-ID), or only a log line."""

    message_id: str
    logged: bool = False


def email_send(
    *, to: str, subject: str, body: str, from_email: str, headers: dict
) -> EmailResult:
    """Hand one email to the configured backend; raise our own error if refused.

    `headers` (Message-ID, In-Reply-To, References, Auto-Submitted) go out
    as given. A Message-ID is made when the row has none, so every message
    we send can be threaded and matched later.
    """
    headers = dict(headers)
    if not any(name.lower() == "message-id" for name in headers):
        headers["Message-ID"] = make_msgid(domain=DNS_NAME)
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=from_email or settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers=headers,
    )
    try:
        message.send(fail_silently=False)
    except (AnymailRecipientsRefused, AnymailInvalidAddress) as exc:
        raise PermanentProviderError(str(exc), code="rejected") from exc
    except AnymailAPIError as exc:
        status = exc.status_code
        # No status is a network failure; 401/403 is our own key, which an
        # operator can fix while the owed messages wait.
        if status is None or status in (401, 403, 429) or status >= 500:
            raise TransientProviderError(
                str(exc), code=str(status or "network")
            ) from exc
        raise PermanentProviderError(str(exc), code=str(status)) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentProviderError("recipient refused", code="rejected") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientProviderError(str(exc), code="smtp") from exc

    status = getattr(message, "anymail_status", None)
    esp_id = getattr(status, "message_id", None)
    message_id = esp_id if isinstance(esp_id, str) and esp_id else ""
    message_id = message_id or next(
        value for name, value in headers.items() if name.lower() == "message-id"
    )
    logged = settings.EMAIL_BACKEND in NON_SENDING_BACKENDS
    return EmailResult(message_id=message_id, logged=logged)
