"""The email backend used without ESP credentials: one masked log line each.

Django's console backend prints every message whole into the worker's log:
customers' addresses, names, phone numbers and words. This one writes what
an operator needs to see that mail would have gone (masked recipients, the
subject with numbers and addresses masked, body size, Message-ID) and no
more. Agents read the full text on the outbox row in admin.
"""

import logging

from django.core.mail.backends.base import BaseEmailBackend

from afterhours.privacy import mask_email, mask_text

logger = logging.getLogger(__name__)

# The subject masker, under the name the tests and callers know.
masked_text = mask_text


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
