"""Authenticated inbound posts that are malformed never get a 500.

A 500 makes the ESP retry and finally drop the mail. An authenticated post
that cannot be turned into a message is kept raw, rejected with its reason
for an agent, and answered 200 (the ESP's delivery is done: we hold it);
only a post that is no message at all gets a 4xx. The inputs come from a
new-user trial; the generated ones cover the kind.
"""

import hashlib
import hmac
import json
import string

import pytest
from django.conf import settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from intake.models import InboundEmail
from tests.intake.test_esp_webhooks import (
    T01,
    mailgun_form,
    post_sendgrid,
    postmark_json,
    sendgrid_fields,
    sendgrid_multipart,
)
from tickets.models import Ticket

TRIAL_POSTMARK_BODIES = [
    {"RawEmail": 123},
    {"RawEmail": ["a"]},
    {"Headers": [{"Name": 5, "Value": "x"}], "TextBody": "hi"},
    {"FromFull": "a@b", "TextBody": "hello"},
    {"RawEmail": {"a": 1}, "Headers": "not a list"},
    {"TextBody": 5, "FromFull": {"Email": ["x"], "Name": 7}},
    {"Attachments": [{"Name": "a.pdf"}], "TextBody": "hi"},
    {"Attachments": "x", "TextBody": "hi"},
    {"ToFull": [{"Email": 5}], "TextBody": "hi"},
    {"Headers": [["Message-ID", "<x@y>"]], "TextBody": "hi"},
    {"Headers": [{"Name": "Message-ID", "Value": 5}], "TextBody": "hi"},
    {"RawEmail": "From: a@b.example\r\n\r\nhi", "BccFull": "x"},
]


def postmark(post, payload):
    return post("postmark", data=json.dumps(payload), content_type="application/json")


def assert_set_aside(response):
    """The post is kept raw and rejected with its reason; no ticket, no 500."""
    assert response.status_code == 200
    rejected = InboundEmail.objects.filter(status=InboundEmail.Status.REJECTED)
    assert rejected.count() == 1
    row = rejected.get()
    assert row.reason
    assert bytes(row.raw)
    assert not Ticket.objects.exists()
    return row


@pytest.mark.parametrize("payload", TRIAL_POSTMARK_BODIES, ids=repr)
def test_malformed_postmark_post_is_kept_for_an_agent_not_a_500(db, post, payload):
    response = postmark(post, payload)

    row = assert_set_aside(response)
    assert row.esp == "postmark"
    assert json.loads(bytes(row.raw)) == payload
    assert "\x00" not in row.reason


def test_postmark_post_rebuilt_into_a_message_with_nul_is_set_aside(db, post):
    payload = {
        "FromFull": {"Email": "dispatch@harborplumbing.example", "Name": "D"},
        "TextBody": "hi \x00 there",
        "Subject": "nul \x00 inside",
    }

    row = assert_set_aside(postmark(post, payload))

    assert "NUL" in row.reason
    assert "\x00" not in row.subject


def test_malformed_postmark_post_retried_is_kept_once(db, post):
    payload = {"FromFull": "a@b", "TextBody": "hello"}
    for _ in range(2):
        assert postmark(post, payload).status_code == 200

    assert InboundEmail.objects.count() == 1


def test_malformed_postmark_post_keeps_the_message_id_it_names(db, post):
    payload = json.loads(postmark_json())
    payload["FromFull"] = "dispatch@harborplumbing.example"

    row = assert_set_aside(postmark(post, payload))

    assert row.message_id == "<t01.20261204@mail.example>"


def test_a_json_list_or_scalar_to_postmark_is_no_message(db, post):
    for body in ("[1, 2]", "5", '"RawEmail"', "null"):
        response = post("postmark", data=body, content_type="application/json")
        assert response.status_code == 400
    assert not InboundEmail.objects.exists()


@pytest.mark.parametrize(
    "changes",
    [
        {"message-headers": "not json"},
        {"message-headers": json.dumps({"From": "a@b"})},
        {"message-headers": json.dumps([["From"], 5])},
        {"message-headers": json.dumps([[5, 6]])},
        {"attachment-count": "2", "content-id-map": "[1]"},
        {"attachment-count": "x"},
        {"content-id-map": "not json", "attachment-count": "1"},
        {"timestamp-unsigned": "x", "body-plain": "\x00"},
        {"event": "delivered"},
    ],
    ids=repr,
)
def test_malformed_mailgun_post_is_never_a_500(db, post, changes):
    form = mailgun_form()
    form.update(changes)

    response = post("mailgun", data=form)

    assert response.status_code < 500
    if response.status_code == 200:
        assert InboundEmail.objects.count() == 1
    else:
        assert not InboundEmail.objects.exists()


def test_mailgun_post_with_a_signed_non_numeric_timestamp_is_kept(db, post):
    form = mailgun_form()
    form["timestamp"] = "soon"
    form["signature"] = hmac.new(
        settings.ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"].encode(),
        f"soon{form['token']}".encode(),
        hashlib.sha256,
    ).hexdigest()

    row = assert_set_aside(post("mailgun", data=form))

    assert "timestamp" in row.reason.lower() or "ValueError" in row.reason


def test_mailgun_post_with_a_non_ascii_signature_field_is_refused(db, post):
    form = mailgun_form()
    form["timestamp"] = "1765165920é"

    response = post("mailgun", data=form)

    assert response.status_code == 400
    assert not InboundEmail.objects.exists()


@pytest.mark.parametrize(
    "changes",
    [
        {"headers": b"\xff\xfe not headers at all"},
        {"attachment-info": b"[1, 2]", "attachments": b"1"},
        {"attachment-info": b'{"attachment1": 5}'},
        {"charsets": b'["utf-8"]'},
        {"charsets": b'{"text": 5}'},
        {"email": b"\x00\x01\x02"},
    ],
    ids=repr,
)
def test_malformed_sendgrid_post_is_never_a_500(db, post, changes):
    fields = sendgrid_fields()
    fields.update(changes)

    response = post_sendgrid(post, fields)

    assert response.status_code < 500


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (
            b'--xYzZY\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n' * 1001
            + b"--xYzZY--\r\n",
            "form could not be read: TooManyFieldsSent",
        ),
        (
            b'--xYzZY\r\nContent-Disposition: form-data; name="headers"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n!!!\r\n--xYzZY--\r\n",
            "could not be",
        ),
    ],
    ids=["too-many-fields", "bad-base64-field"],
)
def test_unreadable_form_after_basic_auth_is_kept(db, post, body, why):
    """The form itself cannot be parsed: the bytes are what the agent gets."""
    response = post(
        "sendgrid", data=body, content_type="multipart/form-data; boundary=xYzZY"
    )

    row = assert_set_aside(response)
    assert bytes(row.raw) == body
    assert why in row.reason


# --- Generated posts: the whole kind, not the trial's inputs ----------------

json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
POSTMARK_KEYS = [
    "RawEmail",
    "FromFull",
    "ToFull",
    "CcFull",
    "BccFull",
    "Headers",
    "TextBody",
    "HtmlBody",
    "Subject",
    "Date",
    "ReplyTo",
    "MessageID",
    "Attachments",
    "RecordType",
    "OriginalRecipient",
    "StrippedTextReply",
]
header_shaped = st.lists(
    st.dictionaries(
        st.sampled_from(["Name", "Value"]),
        json_value | st.sampled_from(["Message-ID", "Return-Path", "<x@y.example>"]),
    ),
    max_size=3,
)
postmark_payload = st.dictionaries(
    st.sampled_from(POSTMARK_KEYS),
    json_value | header_shaped | st.text(alphabet=string.printable, max_size=80),
    min_size=1,
    max_size=6,
)
GENERATED = hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@GENERATED
@given(payload=postmark_payload)
def test_generated_postmark_posts_never_500(businesses, post, payload):
    response = postmark(post, payload)

    assert response.status_code in (200, 400)


MAILGUN_FIELDS = [
    "message-headers",
    "body-plain",
    "body-html",
    "body-mime",
    "attachment-count",
    "content-id-map",
    "event",
    "sender",
    "recipient",
    "stripped-text",
    "from",
    "subject",
]
form_text = st.text(max_size=60) | json_value.map(json.dumps)
form_changes = st.dictionaries(
    st.sampled_from(MAILGUN_FIELDS), form_text, min_size=1, max_size=5
)


@GENERATED
@given(changes=form_changes, timestamp=st.text(max_size=12))
def test_generated_mailgun_posts_never_500(businesses, post, changes, timestamp):
    form = mailgun_form()
    form.update(changes)
    form["timestamp"] = timestamp
    form["signature"] = hmac.new(
        settings.ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"].encode(),
        f"{timestamp}{form['token']}".encode(),
        hashlib.sha256,
    ).hexdigest()

    response = post("mailgun", data={k: v.replace("\x00", "") for k, v in form.items()})

    assert response.status_code in (200, 400)


SENDGRID_FIELDS = [
    "headers",
    "text",
    "html",
    "email",
    "charsets",
    "attachment-info",
    "attachments",
    "from",
    "to",
    "subject",
    "envelope",
]


@GENERATED
@given(
    changes=st.dictionaries(
        st.sampled_from(SENDGRID_FIELDS),
        st.binary(max_size=60) | form_text.map(str.encode),
        min_size=1,
        max_size=5,
    ),
    drop=st.sets(st.sampled_from(SENDGRID_FIELDS)),
)
def test_generated_sendgrid_posts_never_500(businesses, post, changes, drop):
    fields = {k: v for k, v in sendgrid_fields(T01).items() if k not in drop}
    fields.update(changes)
    body = sendgrid_multipart(fields)

    response = post(
        "sendgrid", data=body, content_type="multipart/form-data; boundary=xYzZY"
    )

    assert response.status_code in (200, 400)
