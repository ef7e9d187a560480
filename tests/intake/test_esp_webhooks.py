"""The inbound webhook for each ESP format Anymail parses for us.

Mailgun, Postmark and SendGrid each post the same message their own way;
each must give one ticket and one first reply however often it is posted.
Bad mail is stored for an agent and answered 200; only a post that is no
message at all gets a 4xx. The configured ESP is switched per test.
"""

import hashlib
import hmac
import json
import re
from email import policy
from email.parser import BytesParser

import pytest
from django.conf import settings
from django.test import override_settings

from intake.models import InboundEmail
from notifications.models import Notification
from tests.conftest import fixture_path
from tickets.models import Ticket

T01 = fixture_path("triage", "T01.eml").read_bytes()


def parsed(raw: bytes):
    return BytesParser(policy=policy.default).parsebytes(raw)


def mailgun_form(raw: bytes = T01, headers=None, token="a" * 50) -> dict:
    """Mailgun's forward() route: the message fully parsed, signed."""
    message = parsed(raw)
    timestamp = "1765165920"
    signature = hmac.new(
        settings.ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"].encode(),
        f"{timestamp}{token}".encode(),
        hashlib.sha256,
    ).hexdigest()
    return {
        "recipient": "support@afterhours.example",
        "sender": str(message["From"].addresses[0].addr_spec),
        "from": str(message["From"]),
        "subject": str(message["Subject"]),
        "body-plain": message.get_content(),
        "message-headers": json.dumps(
            headers if headers is not None else list(message.items())
        ),
        "timestamp": timestamp,
        "token": token,
        "signature": signature,
    }


def postmark_json(raw: bytes = T01, headers=None) -> str:
    """Postmark's inbound JSON, without RawEmail (the default)."""
    message = parsed(raw)
    sender = message["From"].addresses[0]
    return json.dumps(
        {
            "FromFull": {"Email": sender.addr_spec, "Name": sender.display_name},
            "ToFull": [{"Email": "support@afterhours.example", "Name": ""}],
            "Subject": str(message["Subject"]),
            "MessageID": "5d6c5f1a-0000-4000-8000-" + str(hash(raw))[-12:],
            "Date": str(message["Date"]),
            "TextBody": message.get_content(),
            "Headers": headers
            if headers is not None
            else [
                {"Name": name, "Value": str(value)}
                for name, value in message.items()
                if name.lower() in ("message-id", "date", "mime-version")
            ],
            "Attachments": [],
        }
    )


def sendgrid_multipart(fields: dict[str, bytes], boundary="xYzZY") -> bytes:
    parts = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
        parts.append(head.encode() + b"\r\n\r\n" + value + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def sendgrid_fields(raw: bytes = T01, text: bytes | None = None, charsets=None):
    """SendGrid's default (parsed) inbound post; text in its own charset."""
    message = parsed(raw)
    header_block = raw.split(b"\n\n", 1)[0].decode()
    return {
        "headers": header_block.encode(),
        "from": str(message["From"]).encode(),
        "to": b"support@afterhours.example",
        "subject": str(message["Subject"]).encode(),
        "text": text if text is not None else message.get_content().encode(),
        "envelope": json.dumps(
            {"to": ["support@afterhours.example"], "from": "x@y.example"}
        ).encode(),
        "charsets": json.dumps(
            charsets or {"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"}
        ).encode(),
    }


def post_sendgrid(post, fields, **kwargs):
    return post(
        "sendgrid",
        data=sendgrid_multipart(fields),
        content_type="multipart/form-data; boundary=xYzZY",
        **kwargs,
    )


def post_esp(post, esp, **kwargs):
    if esp == "mailgun":
        return post("mailgun", data=mailgun_form(), **kwargs)
    if esp == "postmark":
        return post(
            "postmark", data=postmark_json(), content_type="application/json", **kwargs
        )
    return post_sendgrid(post, sendgrid_fields(), **kwargs)


ESPS = ["mailgun", "postmark", "sendgrid"]


@pytest.mark.parametrize("esp", ESPS)
def test_esp_post_opens_ticket_and_queues_first_reply(businesses, post, esp):
    response = post_esp(post, esp)

    assert response.status_code == 200
    ticket = Ticket.objects.get()
    assert ticket.business.name == "Harbor Plumbing & Heating"
    assert ticket.priority == "P0"
    assert ticket.subject == "No call summaries tonight"
    reply = Notification.objects.get(reason=Notification.Reason.FIRST_REPLY)
    assert reply.recipient == "dispatch@harborplumbing.example"
    assert reply.headers["In-Reply-To"] == "<t01.20261204@mail.example>"
    inbound_email = InboundEmail.objects.get()
    assert inbound_email.esp == esp
    assert inbound_email.status == InboundEmail.Status.PROCESSED


@pytest.mark.parametrize("esp", ESPS)
def test_esp_second_identical_delivery_changes_nothing(businesses, post, esp):
    post_esp(post, esp)
    counts = (
        Ticket.objects.count(),
        Notification.objects.count(),
        InboundEmail.objects.count(),
    )

    response = post_esp(post, esp)

    assert response.status_code == 200
    assert (
        (
            Ticket.objects.count(),
            Notification.objects.count(),
            InboundEmail.objects.count(),
        )
        == counts
        == (1, 3, 1)
    )


@pytest.mark.parametrize("esp", ESPS)
@pytest.mark.parametrize("auth", ["", "test:wrong-secret"])
def test_esp_post_without_the_webhook_secret_is_rejected(businesses, post, esp, auth):
    response = post_esp(post, esp, auth=auth)

    assert 400 <= response.status_code < 500
    assert not InboundEmail.objects.exists()
    assert not Ticket.objects.exists()


def test_mailgun_post_with_a_bad_signature_is_rejected(businesses, post):
    form = mailgun_form()
    form["signature"] = "0" * 64

    response = post("mailgun", data=form)

    assert response.status_code == 400
    assert not InboundEmail.objects.exists()


@pytest.mark.parametrize("esp", ESPS)
def test_only_the_configured_esp_has_an_inbound_url(client, esp):
    others = [other for other in ESPS if other != esp]
    with override_settings(ANYMAIL_ESP=esp):
        for other in others:
            assert client.post(f"/anymail/{other}/inbound/").status_code == 404
        assert client.post("/anymail/mandrill/inbound/").status_code == 404


@pytest.mark.parametrize(
    ("esp", "kwargs"),
    [
        ("mailgun", {"data": {"timestamp": "1", "token": "t", "signature": "s"}}),
        ("postmark", {"data": "not json", "content_type": "application/json"}),
        ("postmark", {"data": '{"Hello": 1}', "content_type": "application/json"}),
        ("sendgrid", {"data": {"spam_score": "0"}}),
    ],
)
def test_a_post_that_is_no_message_gets_4xx_and_stores_nothing(db, post, esp, kwargs):
    if esp == "mailgun":
        form = mailgun_form()
        kwargs = {"data": {k: form[k] for k in ("timestamp", "token", "signature")}}

    response = post(esp, **kwargs)

    assert 400 <= response.status_code < 500
    assert not InboundEmail.objects.exists()


def test_sendgrid_text_in_its_declared_charset_is_decoded_by_the_map(businesses, post):
    text = "Our line 617-555-0142: Café owner says “no texts” – since 9:30 PM."
    fields = sendgrid_fields(
        text=text.encode("windows-1252"),
        charsets={"text": "windows-1252", "subject": "UTF-8"},
    )

    response = post_sendgrid(post, fields)

    assert response.status_code == 200
    message = Ticket.objects.get().messages.get(direction="in")
    assert text in message.body


@pytest.mark.parametrize(
    "charsets",
    [
        {"text": "x-no-such-charset"},
        {"text": "utf-8"},
        {"text": "us-ascii"},
    ],
    ids=["unknown-label", "wrong-utf8", "wrong-ascii"],
)
def test_sendgrid_wrong_or_unknown_charset_never_500s_and_loses_nothing(
    businesses, post, charsets
):
    text = "Our line 617-555-0142 – Café calls missing since 9:30 PM."

    response = post_sendgrid(
        post, sendgrid_fields(text=text.encode("windows-1252"), charsets=charsets)
    )

    assert response.status_code == 200
    assert text in Ticket.objects.get().messages.get(direction="in").body


def good_message(n: int) -> bytes:
    return (
        f"From: Dana <dispatch@harborplumbing.example>\r\n"
        f"To: support@afterhours.example\r\nSubject: Batch {n}\r\n"
        f"Date: Tue, 08 Dec 2026 15:0{n}:00 +0000\r\n"
        f"Message-ID: <batch-{n}@harborplumbing.example>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Report {n}: our line 617-555-0142 is quiet tonight.\r\n"
    ).encode()


def bad_message() -> bytes:
    """An encoded-word that decodes to CR LF: a header injection attempt."""
    return (
        good_message(5)
        .replace(
            b"Subject: Batch 5",
            b"Subject: =?utf-8?q?Batch=0D=0ABcc:_all@evil.example?=",
        )
        .replace(b"<batch-5@", b"<batch-bad@")
    )


def assert_batch_outcome():
    rejected = InboundEmail.objects.get(status=InboundEmail.Status.REJECTED)
    assert rejected.message_id == "<batch-bad@harborplumbing.example>"
    assert rejected.reason
    assert rejected.ticket is None
    assert InboundEmail.objects.filter(status="processed").count() == 2
    assert Ticket.objects.count() == 2
    assert Notification.objects.filter(reason="first_reply").count() == 2


def test_mailgun_batch_with_a_malformed_message_processes_each_once(businesses, post):
    batch = [good_message(1), bad_message(), good_message(2)]
    for _ in range(2):  # the whole batch delivered again after a timeout
        for raw in batch:
            assert post("mailgun", data=mailgun_form(raw)).status_code == 200

    assert_batch_outcome()


def test_mailgun_parsed_header_with_raw_crlf_is_stored_not_500(businesses, post):
    """Anymail itself refuses a header value holding CR LF; we store it."""
    headers = [
        ["From", "Dana <dispatch@harborplumbing.example>"],
        ["Subject", "Batch\r\nBcc: all@evil.example"],
        ["Message-Id", "<raw-crlf@harborplumbing.example>"],
    ]
    for _ in range(2):
        response = post("mailgun", data=mailgun_form(good_message(1), headers))
        assert response.status_code == 200

    rejected = InboundEmail.objects.get()
    assert rejected.status == InboundEmail.Status.REJECTED
    assert rejected.message_id == "<raw-crlf@harborplumbing.example>"
    assert rejected.reason
    assert not Ticket.objects.exists()


def test_postmark_batch_with_a_malformed_message_processes_each_once(businesses, post):
    def payload(raw):
        data = json.loads(postmark_json(raw))
        data["RawEmail"] = raw.decode()
        return json.dumps(data)

    batch = [good_message(1), bad_message(), good_message(2)]
    for _ in range(2):
        for raw in batch:
            response = post(
                "postmark", data=payload(raw), content_type="application/json"
            )
            assert response.status_code == 200

    assert_batch_outcome()


def test_sendgrid_batch_with_a_malformed_message_processes_each_once(businesses, post):
    batch = [good_message(1), bad_message(), good_message(2)]
    for _ in range(2):
        for raw in batch:
            fields = sendgrid_fields(raw)
            assert post_sendgrid(post, fields).status_code == 200

    assert_batch_outcome()


def test_mailgun_raw_mime_post_keeps_the_message_bytes(businesses, post):
    """Mailgun's raw-MIME route: the stored message is the one sent."""
    raw = fixture_path("mime", "win1252-folded-subject.eml").read_bytes()
    form = mailgun_form(raw)
    del form["message-headers"], form["body-plain"]
    form["body-mime"] = raw.decode("ascii")

    response = post("mailgun", data=form)

    assert response.status_code == 200
    assert bytes(InboundEmail.objects.get().raw) == raw
    ticket = Ticket.objects.get()
    assert ticket.subject == "Lignes coupées – Café Nord [urgent]"
    assert "“All lines dead”" in ticket.messages.get(direction="in").body


def test_postmark_attachment_becomes_a_ticket_attachment(businesses, post):
    eml = fixture_path("mime", "attachment-only.eml").read_text()
    content = re.search(r"^JVBER\S+$", eml, re.M).group(0)
    data = json.loads(postmark_json())
    data["Attachments"] = [
        {
            "Name": "outage.pdf",
            "Content": content,
            "ContentType": "application/pdf",
            "ContentLength": 54,
        }
    ]

    response = post("postmark", data=json.dumps(data), content_type="application/json")

    assert response.status_code == 200
    message = Ticket.objects.get().messages.get(direction="in")
    attachment = message.attachments.get()
    assert attachment.filename == "outage.pdf"
    with attachment.file.open("rb") as handle:
        assert handle.read().startswith(b"%PDF-1.4")


@pytest.mark.parametrize("esp", ["mailgun", "postmark"])
def test_rebuilt_message_without_message_id_is_still_stored_once(businesses, post, esp):
    """Parsed posts are rebuilt with new MIME boundaries each time; a retry
    of a message with no Message-ID must still be recognised."""
    raw = T01.replace(b"Message-ID: <t01.20261204@mail.example>\n", b"")
    for _ in range(2):
        if esp == "mailgun":
            response = post("mailgun", data=mailgun_form(raw))
        else:
            response = post(
                "postmark", data=postmark_json(raw), content_type="application/json"
            )
        assert response.status_code == 200

    inbound_email = InboundEmail.objects.get()
    assert inbound_email.message_id.endswith("@no-message-id.invalid>")
    assert Ticket.objects.count() == 1
