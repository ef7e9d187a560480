"""End-of-call reports: what a signed body may hold, and corrected reports.

Every body here is signed properly and posted through the real view, so a
refusal is the report's content, not its signature. A report that cannot be
stored (NaN, infinities, lone surrogates), names no call a Twilio CallSid
can match, carries a field of the wrong JSON type or a summary over the
limit is refused with a 4xx and a reason, and nothing is stored or queued.

A second, different report for a call corrects it: the call and its
Airtable record change, and on-call gets at most one SMS for corrections.
An identical replay changes nothing.
"""

import json
import time
from unittest import mock

import pytest
from django.test import Client, override_settings

from intake.call_summary import (
    MAX_REPORT_BYTES,
    MAX_SUMMARY_CHARS,
    call_summary_record,
)
from intake.models import Call, InboundEmail, WebhookEvent
from notifications.models import Notification
from tests.intake.test_call_summary_sms import voice
from tests.intake.test_call_summary_webhook import URL, sign

State = Notification.State
CALL_ID = "CA11111111111111111111111111111111"
REPORT = {
    "call_id": CALL_ID,
    "caller": "+16175550199",
    "summary": "Basement flooding, water shut off, wants a callback tonight.",
    "urgency": "high",
    "started_at": "2026-12-08T03:01:20+00:00",
    "ended_at": "2026-12-08T03:02:11+00:00",
}
FIRST = "Basement flooding, water shut off, wants a callback tonight."
CORRECTED = "Correction: the flooding is in the crawl space; no water shut-off."


def post_body(client, body: bytes):
    return client.post(
        URL,
        data=body,
        content_type="application/json",
        HTTP_X_AFTERHOURS_SIGNATURE=sign(body, t=int(time.time())),
    )


def post_report(client, report: dict, **dumps):
    return post_body(client, json.dumps(report, **dumps).encode())


def report_body(**fields) -> bytes:
    """A report with `fields` written in as raw JSON text."""
    parts = [f'"call_id": "{CALL_ID}"', '"summary": "Burst pipe."']
    parts += [f'"{name}": {raw}' for name, raw in fields.items()]
    return ("{" + ", ".join(parts) + "}").encode()


@pytest.fixture
def client():
    return Client()


@pytest.fixture
def queued(django_capture_on_commit_callbacks, monkeypatch):
    """The report ids each request queued for processing after its commit."""
    ids = []
    original = Client.post

    def recording_post(self, *args, **kwargs):
        with (
            mock.patch("intake.tasks.call_summary_process.delay", ids.append),
            django_capture_on_commit_callbacks(execute=True),
        ):
            return original(self, *args, **kwargs)

    monkeypatch.setattr(Client, "post", recording_post)
    return ids


@pytest.fixture
def worker(django_capture_on_commit_callbacks):
    """Process queued reports as the task does; record what it queues."""
    airtable, sends = [], []

    def process(webhook_event_id: int) -> Call | None:
        with (
            mock.patch("intake.tasks.call_airtable_sync.delay", airtable.append),
            mock.patch("notifications.tasks.notification_send.delay", sends.append),
            django_capture_on_commit_callbacks(execute=True),
        ):
            return call_summary_record(webhook_event_id=webhook_event_id)

    process.airtable = airtable
    process.sends = sends
    return process


def refused(response, queued, status: int = 400) -> str:
    assert response.status_code == status, response.content
    assert not WebhookEvent.objects.exists()
    assert not Call.objects.exists()
    assert not Notification.objects.exists()
    assert queued == []
    return response.content.decode()


def summary_sms() -> list[Notification]:
    return list(
        Notification.objects.filter(channel="sms", reason="call_summary").order_by("pk")
    )


# --- 1. Valid JSON that cannot be stored ------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body,reason",
    [
        (report_body(duration="NaN"), "NaN"),
        (report_body(duration="Infinity"), "Infinity"),
        (report_body(duration="-Infinity"), "-Infinity"),
        (report_body(duration="1e400"), "1e400"),
        (report_body(duration="-1e400"), "-1e400"),
        (report_body(extra='{"nested": [1, 2, NaN]}'), "NaN"),
        (report_body(started_at="1e400"), "1e400"),
        (report_body(urgency='"\\ud800"'), "surrogate"),
        (report_body(note='"ok \\udc00 then"'), "surrogate"),
        (report_body(note='["a", {"b": "\\ud83d"}]'), "surrogate"),
        (report_body(**{"\\ud800key": "1"}), "surrogate"),
        (report_body(**{"nul\\u0000key": "1"}), "NUL"),
        (report_body(note="[" * 200 + "]" * 200), "nested"),
        (report_body(duration="1" * 5000), "digits"),
    ],
    ids=[
        "nan",
        "infinity",
        "minus-infinity",
        "overflow",
        "minus-overflow",
        "nested-nan",
        "overflowing-time",
        "high-surrogate",
        "low-surrogate",
        "nested-surrogate",
        "surrogate-key",
        "nul-key",
        "deep-200",
        "huge-integer",
    ],
)
def test_a_report_that_cannot_be_stored_is_400_with_its_reason(
    client, queued, body, reason
):
    text = refused(post_body(client, body), queued)

    assert reason in text


@pytest.mark.django_db
def test_a_surrogate_pair_written_as_escapes_is_a_character_and_taken(
    client, queued, worker
):
    """Only a lone surrogate is refused: "\\ud83d\\udca5" is one emoji."""
    body = report_body(note='"pipe \\ud83d\\udca5 burst"')

    assert post_body(client, body).status_code == 200
    assert WebhookEvent.objects.get().payload["note"] == "pipe \U0001f4a5 burst"
    assert worker(queued[0]).summary == "Burst pipe."


# --- 2. Types: call_id and every other field ---------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "call_id",
    [
        "true",
        "12345",
        "12345.0",
        '"CA 💥 ☎"',
        '"CA-1111"',
        '"C"',
        '""',
        '"   "',
        "null",
        '["CA1111"]',
        '{"sid": "CA1111"}',
        '"' + "C" * 65 + '"',
    ],
)
def test_a_call_id_no_callsid_can_match_is_400(client, queued, call_id):
    body = ('{"call_id": ' + call_id + ', "summary": "Burst pipe."}').encode()

    assert "call_id" in refused(post_body(client, body), queued)


@pytest.mark.django_db
def test_a_report_without_call_id_is_400(client, queued):
    assert "call_id" in refused(post_report(client, {"summary": "x"}), queued)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "field,raw",
    [
        ("summary", "42"),
        ("summary", "true"),
        ("summary", '["Burst", "pipe"]'),
        ("summary", '{"text": "Burst pipe"}'),
        ("caller", "16175550199"),
        ("caller", '["+16175550199"]'),
        ("urgency", '{"level": 3}'),
        ("urgency", "3"),
        ("urgency", "false"),
        ("to", "6175550142"),
        ("business_line", '{"number": "+16175550142"}'),
        ("started_at", "true"),
        ("started_at", '["2026-12-08T03:01:20+00:00"]'),
        ("ended_at", '{"at": "2026-12-08T03:02:11+00:00"}'),
    ],
)
def test_a_field_of_the_wrong_json_type_is_400_not_its_str(client, queued, field, raw):
    if field == "summary":
        body = f'{{"call_id": "{CALL_ID}", "summary": {raw}}}'.encode()
    else:
        body = report_body(**{field: raw})

    assert field in refused(post_body(client, body), queued)


@pytest.mark.django_db
def test_optional_fields_may_be_null_or_absent(client, queued, worker):
    report = {
        "call_id": CALL_ID,
        "summary": None,
        "caller": None,
        "urgency": None,
        "to": None,
        "started_at": None,
        "ended_at": None,
    }

    assert post_report(client, report).status_code == 200
    call = worker(queued[0])
    assert (call.summary, call.urgency, call.caller_number) == ("", "", "")


@pytest.mark.django_db
def test_a_sid_of_letters_and_digits_and_epoch_times_are_taken(client, queued, worker):
    """The voice webhook's rule: any 2-64 letters and digits is a CallSid."""
    report = {"call_id": "12345", "summary": "x", "started_at": 1796698880}

    assert post_report(client, report).status_code == 200
    call = worker(queued[0])
    assert call.provider_call_id == "12345"
    assert call.started_at.isoformat() == "2026-12-08T03:01:20+00:00"


# --- 3. Size -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_summary_over_the_limit_is_413_before_anything_is_stored(client, queued):
    report = {**REPORT, "summary": "w" * (MAX_SUMMARY_CHARS + 1)}

    text = refused(post_report(client, report), queued, status=413)

    assert "summary" in text and f"{MAX_SUMMARY_CHARS:,}" in text


@pytest.mark.django_db
def test_a_summary_at_the_limit_is_taken_even_written_as_escapes(client, queued):
    """20,000 emoji, each sent as a 12-byte surrogate-pair escape."""
    report = {**REPORT, "summary": "\U0001f4a5" * MAX_SUMMARY_CHARS}
    body = json.dumps(report).encode()
    assert len(body) > 200_000

    assert post_body(client, body).status_code == 200
    stored = WebhookEvent.objects.get().payload["summary"]
    assert len(stored) == MAX_SUMMARY_CHARS


@pytest.mark.django_db
def test_a_report_over_the_byte_limit_is_413(client, queued):
    report = {**REPORT, "transcript": "x" * MAX_REPORT_BYTES}

    text = refused(post_report(client, report), queued, status=413)

    assert f"{MAX_REPORT_BYTES:,}" in text


@pytest.mark.django_db
def test_a_body_over_djangos_upload_limit_is_413_not_500(client, queued):
    report = {**REPORT, "summary": "w" * 2_500_000}
    client.raise_request_exception = True

    text = refused(post_report(client, report), queued, status=413)

    assert "bytes" in text


@pytest.mark.django_db
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_body_over_a_lower_upload_limit_is_djangos_400_with_a_reason(client, queued):
    text = refused(post_report(client, REPORT | {"note": "x" * 1000}), queued, 400)

    assert "1,000" in text


# --- 4. A replay and a corrected report ------------------------------------------


@pytest.mark.django_db
def test_an_identical_replay_is_a_no_op_however_it_is_written(client, queued, worker):
    assert post_report(client, REPORT).status_code == 200
    call = worker(queued[0])
    replay = dict(reversed(REPORT.items()))

    assert post_report(client, replay, indent=2).status_code == 200

    assert len(queued) == 1
    assert WebhookEvent.objects.count() == 1
    call.refresh_from_db()
    assert call.summary == FIRST


@pytest.mark.django_db
def test_a_corrected_report_updates_the_call_and_its_airtable_record(
    businesses, client, queued, worker
):
    voice("completed")
    assert post_report(client, REPORT).status_code == 200
    call = worker(queued[0])
    Call.objects.update(airtable_state=Call.SyncState.SYNCED)

    corrected = {**REPORT, "summary": CORRECTED, "urgency": "Low"}
    assert post_report(client, corrected).status_code == 200
    assert len(queued) == 2
    worker(queued[1])

    call.refresh_from_db()
    assert (call.summary, call.urgency) == (CORRECTED, "low")
    assert call.airtable_state == Call.SyncState.PENDING
    assert call.airtable_next_attempt_at is None
    assert worker.airtable == [call.pk, call.pk]
    reports = WebhookEvent.objects.filter(provider="call_provider")
    assert [e.status for e in reports.order_by("pk")] == ["processed"] * 2


@pytest.mark.django_db
def test_a_replay_of_an_earlier_report_never_undoes_a_correction(
    client, queued, worker
):
    assert post_report(client, REPORT).status_code == 200
    assert post_report(client, {**REPORT, "summary": CORRECTED}).status_code == 200
    for webhook_event_id in queued:
        worker(webhook_event_id)

    assert post_report(client, REPORT).status_code == 200
    assert post_report(client, {**REPORT, "summary": CORRECTED}).status_code == 200

    assert len(queued) == 2
    assert Call.objects.get().summary == CORRECTED


@pytest.mark.django_db
def test_reports_processed_out_of_order_leave_the_newest(client, queued, worker):
    """Two workers may take the original and its correction in either order."""
    assert post_report(client, REPORT).status_code == 200
    assert post_report(client, {**REPORT, "summary": CORRECTED}).status_code == 200
    first, correction = queued

    worker(correction)
    worker(first)

    assert Call.objects.get().summary == CORRECTED
    assert WebhookEvent.objects.filter(status="pending").count() == 0


@pytest.mark.django_db
def test_a_correction_before_the_sms_left_is_written_into_it(
    businesses, client, queued, worker
):
    voice("completed")
    [sms] = summary_sms()
    Notification.objects.filter(pk=sms.pk).update(next_attempt_at=None)
    post_report(client, REPORT)
    worker(queued[0])

    post_report(client, {**REPORT, "summary": CORRECTED})
    worker(queued[1])

    [sms] = summary_sms()
    assert sms.state == State.PENDING
    assert sms.body.endswith(CORRECTED)


@pytest.mark.django_db
def test_corrections_after_the_sms_left_owe_one_sms_at_most(
    businesses, client, queued, worker
):
    voice("completed")
    post_report(client, REPORT)
    worker(queued[0])
    [first] = summary_sms()
    assert first.body.endswith(FIRST)
    Notification.objects.update(state=State.SENT, attempts=1)

    post_report(client, {**REPORT, "summary": CORRECTED})
    worker(queued[1])

    _, correction = summary_sms()
    assert correction.body.endswith(CORRECTED)
    assert correction.recipient == first.recipient
    Notification.objects.update(state=State.SENT, attempts=1)

    for n in range(3):
        post_report(client, {**REPORT, "summary": f"{CORRECTED} Take {n}."})
        worker(queued[-1])

    assert len(summary_sms()) == 2
    assert Call.objects.get().summary == f"{CORRECTED} Take 2."
    assert len(worker.airtable) == 5


@pytest.mark.django_db
def test_a_correction_sms_not_yet_sent_carries_the_latest_correction(
    businesses, client, queued, worker
):
    voice("completed")
    post_report(client, REPORT)
    worker(queued[0])
    Notification.objects.update(state=State.SENT, attempts=1)

    for n in range(3):
        post_report(client, {**REPORT, "summary": f"{CORRECTED} Take {n}."})
        worker(queued[-1])

    first, correction = summary_sms()
    assert correction.state == State.PENDING
    assert correction.body.endswith(f"{CORRECTED} Take 2.")


@pytest.mark.django_db
def test_a_summary_to_follow_then_its_summary_then_one_correction(
    businesses, client, queued, worker
):
    """The late summary's follow-up and a correction: three SMS in all."""
    voice("completed")
    Notification.objects.update(state=State.SENT, attempts=1)
    post_report(client, REPORT)
    worker(queued[0])
    Notification.objects.update(state=State.SENT, attempts=1)

    for n in range(3):
        post_report(client, {**REPORT, "summary": f"{CORRECTED} Take {n}."})
        worker(queued[-1])
        Notification.objects.update(state=State.SENT, attempts=1)

    to_follow, late_summary, correction = summary_sms()
    assert to_follow.body.endswith("Summary to follow.")
    assert late_summary.body.endswith(FIRST)
    assert correction.body.endswith(f"{CORRECTED} Take 0.")


@pytest.mark.django_db
def test_a_correction_that_changes_nothing_on_call_reads_sends_nothing(
    businesses, client, queued, worker
):
    voice("completed")
    post_report(client, REPORT)
    worker(queued[0])
    Notification.objects.update(state=State.SENT, attempts=1)

    post_report(client, {**REPORT, "provider_note": "re-sent with a note"})
    worker(queued[1])

    assert len(summary_sms()) == 1


# --- The other JSON webhook in intake: Postmark inbound -------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"TextBody": "hi", "Spam": NaN}',
        b'{"TextBody": "hi", "Spam": 1e400}',
        b'{"TextBody": "hi \\ud800"}',
        b'{"Subject": "\\udc00", "TextBody": "hi"}',
    ],
    ids=["nan", "overflow", "surrogate-body", "surrogate-subject"],
)
def test_a_postmark_post_that_cannot_be_stored_is_set_aside(db, post, body):
    response = post("postmark", data=body, content_type="application/json")

    assert response.status_code == 200
    row = InboundEmail.objects.get(status=InboundEmail.Status.REJECTED)
    assert "JSON" in row.reason
    assert bytes(row.raw) == body
