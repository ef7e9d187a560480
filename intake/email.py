"""Raw support email in, our own ParsedEmail out.

Everything that knows about MIME, charsets and mail headers stays in this
module; the rest of the product sees ParsedEmail. Parsing never raises on
bad mail: what cannot be read safely is named in `malformed`, so the caller
can set the message aside for an agent instead of failing.
"""

import binascii
import datetime as dt
import hashlib
import html
import re
from dataclasses import dataclass, field
from email import policy
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from django.conf import settings

# RFC 3834 and the habits of common mail servers: values of Precedence that
# mark mail no person wrote to us.
AUTOMATIC_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
DAEMON_LOCAL_PARTS = {"mailer-daemon", "postmaster"}
# Headers whose value we copy into tickets and our own replies; a line break
# inside any of them after decoding could inject headers into our mail.
CHECKED_HEADERS = (
    "From",
    "To",
    "Reply-To",
    "Subject",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Date",
)
MESSAGE_ID_RE = re.compile(r"<[^<>\s]+>")
SURROGATE_RE = re.compile("[\ud800-\udfff]")
# RFC 2047 encoded words, found in the header's bytes.
ENCODED_WORD_RE = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
# A MIME delimiter line followed by a part's first header: how a multipart
# body shows its real boundary when its Content-Type names none (or a
# wrong one).
BOUNDARY_LINE_RE = re.compile(
    rb"^--([^\s\"]{1,70})[ \t]*\r?\n[A-Za-z][A-Za-z0-9-]*:", re.MULTILINE
)
# Reply history that a mail client quotes below (or above) the new text.
QUOTE_START_RE = re.compile(
    r"^(?:On .+ wrote:\s*$|-{2,}\s*Original Message\s*-{2,}|_{5,}\s*$|From: .+$)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


@dataclass
class ParsedEmail:
    """One inbound message, decoded; the product's own view of it."""

    message_id: str
    message_id_generated: bool = False
    from_name: str = ""
    from_address: str = ""
    reply_to: str = ""
    to: list[str] = field(default_factory=list)
    subject: str = ""
    date: dt.datetime | None = None
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    text: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    is_automatic: bool = False
    automatic_why: str = ""
    bounced_addresses: list[str] = field(default_factory=list)
    malformed: str = ""

    @property
    def thread_ids(self) -> list[str]:
        """Message-IDs this one answers, nearest first, without repeats."""
        ids = [self.in_reply_to] if self.in_reply_to else []
        ids += reversed(self.references)
        return list(dict.fromkeys(ids))

    @property
    def reply_address(self) -> str:
        return self.reply_to or self.from_address

    @property
    def new_text(self) -> str:
        """The text without the quoted history a reply carries below it.

        Our own questions are quoted back in replies; reading facts from
        them would fill facts the customer never gave.
        """
        kept = []
        for line in self.text.splitlines():
            if QUOTE_START_RE.match(line.strip()) and kept:
                break
            if line.lstrip().startswith(">"):
                continue
            kept.append(line)
        return "\n".join(kept).strip()


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse raw message bytes; never raises on malformed mail."""
    message_id_hash = f"<{hashlib.sha256(raw).hexdigest()[:40]}@no-message-id.invalid>"
    if not raw.strip():
        return ParsedEmail(
            message_id=message_id_hash,
            message_id_generated=True,
            malformed="empty message",
        )
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except (MessageError, ValueError, TypeError, LookupError) as exc:
        return ParsedEmail(
            message_id=message_id_hash,
            message_id_generated=True,
            malformed=f"message could not be parsed: {exc}",
        )

    problems = []
    if not message.keys():
        # Random bytes, or text with no header block: no mail to answer.
        problems.append("no headers: not a mail message")
    headers = {}
    for name in CHECKED_HEADERS:
        try:
            if name == "Subject":
                # Our own decoding: the parser's turns a wrongly labelled
                # charset into U+FFFD where the body's fallback chain reads
                # it right.
                value = decode_header_text(_raw_header(message, name))
            else:
                value = message.get(name)
                value = "" if value is None else str(value)
        except (MessageError, ValueError, TypeError, LookupError, IndexError) as exc:
            problems.append(f"header {name} could not be decoded: {exc}")
            value = _raw_header(message, name)
        value = _readable(value)
        if "\r" in value or "\n" in value:
            problems.append(f"header {name} contains a line break after decoding")
            value = re.sub(r"[\r\n]+", " ", value)
        if "\x00" in value:
            # PostgreSQL text cannot hold NUL; no real header carries one.
            problems.append(f"header {name} contains a NUL character")
            value = value.replace("\x00", "")
        headers[name] = value.strip()

    found_ids = MESSAGE_ID_RE.findall(headers["Message-ID"])
    message_id = found_ids[0] if found_ids else headers["Message-ID"]
    parsed = ParsedEmail(
        message_id=message_id[:998] or message_id_hash,
        message_id_generated=not message_id,
        subject=re.sub(r"\s+", " ", headers["Subject"]).strip(),
        date=_date(headers["Date"]),
        in_reply_to=next(iter(MESSAGE_ID_RE.findall(headers["In-Reply-To"])), ""),
        references=MESSAGE_ID_RE.findall(headers["References"]),
    )
    parsed.from_name, parsed.from_address = _address(message, "From", headers)
    if "@" not in parsed.from_address and message.keys():
        # Nobody to answer and nothing to match a business by.
        problems.append("no sender address (From)")
    parsed.reply_to = _address(message, "Reply-To", headers)[1]
    parsed.to = [
        address.lower()
        for _, address in getaddresses([headers["To"]])
        if "@" in address
    ]

    try:
        parsed.text = _body_text(message) if message.keys() else ""
        parsed.attachments = _attachments(message)
        parsed.bounced_addresses = _bounced_addresses(message)
        returned = _returned_message_id(message)
        if returned and returned not in parsed.references:
            # A bounce names no thread itself; the message it returns does.
            parsed.references.append(returned)
    except (MessageError, ValueError, TypeError, LookupError, AssertionError) as exc:
        problems.append(f"body could not be read: {exc}")

    parsed.automatic_why = _automatic_why(message, parsed)
    parsed.is_automatic = bool(parsed.automatic_why)
    parsed.malformed = "; ".join(problems)
    return parsed


def decode_text(payload: bytes, declared: str | None) -> str:
    """Bytes of a text part as str, without losing a character.

    Mail often declares no charset, or the wrong one: try the declared
    charset, then UTF-8, then windows-1252 (the usual undeclared 8-bit
    charset), and finally latin-1, which maps every byte.
    """
    for charset in (declared, "utf-8", "windows-1252"):
        if not charset or not isinstance(charset, str):
            continue
        try:
            return payload.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return payload.decode("latin-1")


def decode_header_text(raw: str) -> str:
    """An unstructured header's text, read as `decode_text` reads bodies.

    `raw` is the header's value as parsed (8-bit bytes kept as surrogate
    escapes). Folding is undone; each RFC 2047 word is decoded by its
    declared charset, then UTF-8, then windows-1252, and so is raw 8-bit
    text between words. Adjacent words in one charset are joined before
    decoding, so a character split across two words survives. A word that
    does not decode is kept as written.
    """
    data = re.sub(r"\r?\n(?=[ \t])", "", raw).encode("utf-8", "surrogateescape")
    chunks: list[tuple[bytes, str | None]] = []
    end = 0
    for found in ENCODED_WORD_RE.finditer(data):
        decoded = _decode_word(found)
        if decoded is None:
            continue
        between = data[end : found.start()]
        previous = chunks[-1] if chunks else None
        # RFC 2047: white space between two encoded words is not text.
        if not (previous and previous[1] is not None and not between.strip()):
            chunks.append((between, None))
        charset = decoded[1]
        if previous and previous[1] == charset and not between.strip():
            chunks[-1] = (previous[0] + decoded[0], charset)
        else:
            chunks.append(decoded)
        end = found.end()
    chunks.append((data[end:], None))
    return "".join(decode_text(chunk, charset) for chunk, charset in chunks if chunk)


def _decode_word(found: re.Match) -> tuple[bytes, str] | None:
    charset = found.group(1).decode("ascii", "replace").split("*")[0].lower()
    text = found.group(3)
    try:
        if found.group(2) in b"bB":
            padded = text + b"=" * (-len(text) % 4)
            payload = binascii.a2b_base64(padded, strict_mode=True)
        else:
            payload = binascii.a2b_qp(text, header=True)
    except (binascii.Error, ValueError):
        return None
    return payload, charset


def _raw_header(message: EmailMessage, name: str) -> str:
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            return str(value)
    return ""


def _address(message: EmailMessage, name: str, headers: dict) -> tuple[str, str]:
    try:
        header = message.get(name)
        addresses = getattr(header, "addresses", ()) if header is not None else ()
    except (MessageError, ValueError, TypeError, IndexError):
        addresses = ()
    for address in addresses:
        if isinstance(address, Address) and address.addr_spec:
            display = address.display_name or ""
            if "\ufffd" in display or SURROGATE_RE.search(display):
                display = _display_name_decoded(message, name) or _readable(display)
            display = re.sub(r"[\r\n\x00]+", " ", display)
            addr_spec = _readable(address.addr_spec).strip().lower()
            return display.strip(), addr_spec.replace("\x00", "")
    display, addr = parseaddr(headers.get(name, ""))
    return display.strip(), addr.strip().lower()


def _readable(value: str) -> str:
    """Text with the parser's escapes of raw 8-bit bytes decoded.

    Bytes no charset names are kept as surrogate escapes, which no database
    or mail can carry; they are read by the body's fallback chain.
    """
    if not SURROGATE_RE.search(value):
        return value
    return decode_text(value.encode("utf-8", "surrogateescape"), None)


def _display_name_decoded(message: EmailMessage, name: str) -> str:
    """The display name by the body's fallback chain, when the parser lost it.

    Only the text before the address is taken, so a decoded comma or angle
    bracket cannot change which address the message is from.
    """
    text = decode_header_text(_raw_header(message, name))
    if "<" not in text:
        return ""
    return text.rsplit("<", 1)[0].strip().strip('"').strip()


def _date(value: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        # RFC 5322's "-0000" means UTC with no claim about the sender's zone.
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


def _body_root(message: EmailMessage) -> EmailMessage:
    """A multipart whose boundary is missing or wrong, read as well as it can.

    The parser keeps such a body as one string and finds no parts in it, so
    its text was lost. If the body shows delimiter lines of its own, it is
    parsed again with that boundary; otherwise it is read as a text part in
    the charset the multipart names.
    """
    if message.get_content_maintype() != "multipart" or message.is_multipart():
        return message
    payload = message.get_payload(decode=True) or b""
    found = BOUNDARY_LINE_RE.search(payload)
    if found:
        head = (
            f"Content-Type: {message.get_content_type()}; "
            f'boundary="{found.group(1).decode("ascii", "replace")}"\r\n\r\n'
        )
        root = BytesParser(policy=policy.default).parsebytes(head.encode() + payload)
        if root.is_multipart():
            return root
    charset = message.get_content_charset()
    head = "Content-Type: text/plain" + (f'; charset="{charset}"' if charset else "")
    return BytesParser(policy=policy.default).parsebytes(
        head.encode("ascii", "replace") + b"\r\n\r\n" + payload
    )


def _walk(part: EmailMessage):
    """Message.walk, through multiparts whose boundary had to be found."""
    root = _body_root(part)
    if root is not part:
        yield from _walk(root)
        return
    yield part
    if part.is_multipart():
        for sub in part.get_payload():
            yield from _walk(sub)


def _text_parts(message: EmailMessage):
    """Leaf parts of the message body, skipping delivery reports' blocks."""
    if message.get_content_maintype() == "multipart":
        root = _body_root(message)
        parts = root.iter_parts() if root is message else [root]
        for part in parts:
            yield from _text_parts(part)
    elif message.get_content_type() in ("message/delivery-status", "message/rfc822"):
        return
    else:
        yield message


def _part_text(part: EmailMessage) -> str:
    payload = part.get_payload(decode=True) or b""
    text = decode_text(payload, part.get_content_charset())
    # NUL cannot be stored in PostgreSQL text and means nothing in mail.
    return re.sub(r"\r\n|\r", "\n", text).replace("\x00", "")


def _body_text(message: EmailMessage) -> str:
    html_part = None
    for part in _text_parts(message):
        if part.is_attachment():
            continue
        if part.get_content_type() == "text/plain":
            return _part_text(part).strip()
        if part.get_content_type() == "text/html" and html_part is None:
            html_part = part
    if html_part is not None:
        return _html_to_text(_part_text(html_part))
    return ""


def _html_to_text(markup: str) -> str:
    # Enough to read the facts out of an HTML-only message; the raw message
    # stays stored for an agent who needs the layout.
    markup = re.sub(r"(?is)<(script|style).*?</\1>", "", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</li>|</tr>", "\n", markup)
    text = html.unescape(re.sub(r"<[^>]+>", "", markup))
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _attachments(message: EmailMessage) -> list[Attachment]:
    found = []
    for part in _walk(message):
        if part.get_content_maintype() == "multipart":
            continue
        filename = part.get_filename()
        if not (part.is_attachment() or filename):
            continue
        if part.get_content_maintype() == "message":
            payload = part.get_payload()
            content = payload[0].as_bytes() if payload else b""
        else:
            content = part.get_payload(decode=True) or b""
        name = re.sub(r"[\r\n\x00/\\]+", " ", filename or "attachment").strip()
        found.append(Attachment(name or "attachment", part.get_content_type(), content))
    return found


def _bounced_addresses(message: EmailMessage) -> list[str]:
    if message.get_content_type() != "multipart/report":
        return []
    addresses = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in part.get_payload() or []:
            recipient = str(block.get("Final-Recipient") or "")
            action = str(block.get("Action") or "failed").strip().lower()
            if not recipient or action != "failed":
                continue
            # "rfc822; someone@example.com": the address type comes first.
            address = recipient.split(";", 1)[-1].strip().strip("<>").lower()
            if "@" in address and address not in addresses:
                addresses.append(address)
    return addresses


def _returned_message_id(message: EmailMessage) -> str:
    """The Message-ID of the message a delivery report returns, if shown."""
    if message.get_content_type() != "multipart/report":
        return ""
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            payload = part.get_payload()
            returned = payload[0] if payload else None
            value = str(returned.get("Message-ID", "")) if returned else ""
        elif content_type == "text/rfc822-headers":
            headers = BytesParser(policy=policy.default).parsebytes(
                part.get_payload(decode=True) or b"", headersonly=True
            )
            value = str(headers.get("Message-ID", ""))
        else:
            continue
        found = MESSAGE_ID_RE.findall(value)
        if found:
            return found[0]
    return ""


def _automatic_why(message: EmailMessage, parsed: ParsedEmail) -> str:
    """Why no person wrote this (RFC 3834), or "" for a person's mail."""
    auto_submitted = str(message.get("Auto-Submitted") or "").strip().lower()
    if auto_submitted and auto_submitted.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {auto_submitted}"
    precedence = str(message.get("Precedence") or "").strip().lower()
    if precedence in AUTOMATIC_PRECEDENCE:
        return f"Precedence: {precedence}"
    if message.get("X-Auto-Response-Suppress") is not None:
        return "X-Auto-Response-Suppress present"
    for name in ("X-Autoreply", "X-Autorespond"):
        if message.get(name) is not None:
            return f"{name} present"
    return_path = message.get("Return-Path")
    if return_path is not None and str(return_path).strip() in ("<>", ""):
        return "empty Return-Path (delivery report)"
    if message.get_content_type() == "multipart/report":
        return "delivery status report"
    local_part = parsed.from_address.partition("@")[0]
    if local_part in DAEMON_LOCAL_PARTS:
        return f"sent by {local_part}"
    if parsed.from_address and parsed.from_address == settings.SUPPORT_EMAIL.lower():
        return "sent from our own support address"
    return ""
