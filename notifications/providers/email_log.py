"""The email backend used without ESP credentials: one masked log line each.

Django's console backend prints every message whole into the worker's log:
customers' addresses, names, phone numbers and words. This one writes what
an operator needs to see that mail would have gone (masked recipients, the
subject with numbers and addresses masked, body size, Message-ID) and no
more. Agents read the full text on the outbox row in admin.
"""

import logging
import re

from django.core.mail.backends.base import BaseEmailBackend

from afterhours.privacy import mask_email, mask_phone

logger = logging.getLogger(__name__)

ADDRESS_RE = re.compile(r"[^\s<>\"'(),;:\[\]]+@[^\s<>\"'(),;:\[\]]+")
# Seven digits or more, with the separators people write between them.
PHONE_RE = re.compile(r"\+?\d[\d\s().-]{5,}\d")


def masked_text(text: str) -> str:
    """`text` with email addresses and phone numbers masked."""
    text = ADDRESS_RE.sub(lambda found: mask_email(found.group(0)), text)
    return PHONE_RE.sub(
        lambda found: mask_phone(re.sub(r"[^\d+]", "", found.group(0))), text
    )


class LoggingEmailBackend(BaseEmailBackend):
    """Logs each message instead of sending it; nothing leaves the machine.

    Returns the number of messages taken, as a sending backend does; the
    outbox marks them "logged", not "sent" (see providers.email).
    """

    def send_messages(self, email_messages) -> int:
        count = 0
        for message in email_messages or ():
            headers = {
                name.lower(): value for name, value in message.extra_headers.items()
            }
            body = str(message.body or "")
            logger.info(
                "email logged, not sent: to=%s subject=%r body_chars=%d "
                "attachments=%d message_id=%s",
                ",".join(mask_email(address) for address in message.recipients()),
                masked_text(str(message.subject or "")),
                len(body),
                len(message.attachments),
                # Ours (make_msgid): a time, a random part and our domain.
                headers.get("message-id", ""),
            )
            count += 1
        return count
