"""/healthz for an uptime monitor, the staff health page, the heartbeat task."""

import datetime as dt
import json
import logging
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from incidents import health, tasks
from intake.models import Call
from notifications.models import Heartbeat
from tests.factories import BusinessFactory, CallFactory, UserFactory

from .health_rows import call_changed_at, owed, voice_callback

M = dt.timedelta(minutes=1)
QUESTIONS = [
    "Is call intake failing or just slow?",
    "Are webhooks arriving?",
    "Are outbound notifications going out?",
    "Is Airtable write failing?",
    "Is the retry scheduler alive?",
]


@pytest.fixture
def alive(db):
    now = timezone.now()
    health.heartbeat_record(beat_sent_at=now, now=now)


@pytest.mark.django_db
def test_healthz_200_with_five_answers_when_nothing_fails(client, alive, businesses):
    CallFactory(business=businesses["Harbor Plumbing & Heating"])
    voice_callback(timezone.now() - M)

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    body = response.json()
    assert body["status"] == "ok"
    assert [c["question"] for c in body["checks"]] == QUESTIONS
    assert {c["status"] for c in body["checks"]} == {"ok"}
    assert all(c["answer"] for c in body["checks"])


@pytest.mark.django_db
def test_healthz_503_when_notifications_are_not_leaving(client, alive):
    stuck = owed(channel="sms", created_at=timezone.now() - 11 * M)
    mail = owed(channel="email", created_at=timezone.now() - 12 * M)

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"][2]["status"] == "fail"
    text = response.content.decode()
    for personal in (stuck.recipient, mail.recipient, "+16175550199", "@"):
        assert personal not in text
    assert "figures" not in json.dumps(body)


@pytest.mark.django_db
def test_healthz_503_when_beat_is_silent(client):
    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"][4]["status"] == "fail"


AIRTABLE_ERROR = (
    "ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=18699): Max "
    "retries exceeded with url: /v0/appHARBOR00000000/Calls"
)


@pytest.mark.django_db
def test_healthz_shows_no_provider_error_but_the_staff_page_does(client, alive):
    call = CallFactory(business=BusinessFactory(airtable_base_id="appHARBOR00000000"))
    call_changed_at(
        call,
        timezone.now() - 20 * M,
        airtable_state=Call.SyncState.FAILED,
        airtable_last_error=AIRTABLE_ERROR,
    )

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"][3]["status"] == "fail"
    text = response.content.decode()
    for internal in ("Last error", "ConnectionError", "127.0.0.1", "18699", "appHAR"):
        assert internal not in text

    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get(reverse("admin-health")).content.decode()
    assert "ConnectionError" in page


@pytest.mark.django_db
def test_healthz_answers_405_to_a_post(client, alive):
    csrf_client = type(client)(enforce_csrf_checks=True)

    assert csrf_client.post("/healthz").status_code == 405
    assert csrf_client.head("/healthz").status_code == 200


@pytest.mark.django_db
def test_healthz_503_logs_one_warning_and_no_error(client, caplog):
    with caplog.at_level(logging.INFO):
        assert client.get("/healthz").status_code == 503

    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "/healthz" in warning.getMessage()
    assert "scheduler" in warning.getMessage()


@pytest.mark.django_db
def test_healthz_query_count_is_constant(client, alive, businesses):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/healthz").status_code in (200, 503)
        return len(captured)

    quiet = queries()
    now = timezone.now()
    harbor = businesses["Harbor Plumbing & Heating"]
    for n in range(30):
        CallFactory(business=harbor)
        voice_callback(now - n * M)
        owed(channel="sms", created_at=now - n * M)
        owed(channel="email", created_at=now - n * M, state="failed")

    assert queries() == quiet == 12


@pytest.mark.django_db
def test_health_page_is_staff_only_and_in_runbook_order(client, alive):
    url = reverse("admin-health")
    assert client.get(url).status_code == 302

    client.force_login(UserFactory())
    assert client.get(url).status_code == 302

    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    response = client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    positions = [page.index(q) for q in QUESTIONS]
    assert positions == sorted(positions)
    assert "retries_overdue" in page

    index = client.get(reverse("admin:index")).content.decode()
    assert url in index


# --- The heartbeat task -------------------------------------------------------


@pytest.mark.django_db
def test_beat_records_itself_when_it_sends_the_heartbeat(monkeypatch):
    """Beat's own row does not wait for a worker: a stopped worker leaves
    beat seen."""
    monkeypatch.setattr(tasks, "_in_beat", True)
    before = timezone.now()

    headers = {}
    tasks._stamp_heartbeat(sender=tasks.HEARTBEAT_TASK, headers=headers)
    tasks._stamp_heartbeat(sender="incidents.tasks.health_check_sweep", headers={})

    seen = dict(Heartbeat.objects.values_list("name", "last_seen"))
    assert list(seen) == ["beat"]
    assert before <= seen["beat"] <= timezone.now()
    assert tasks.BEAT_SENT_AT_HEADER in headers


@pytest.mark.django_db
def test_no_beat_record_outside_beat():
    tasks._stamp_heartbeat(sender=tasks.HEARTBEAT_TASK, headers={})

    assert not Heartbeat.objects.exists()


@pytest.mark.django_db
def test_heartbeat_sent_by_hand_records_the_worker_only():
    tasks.heartbeat.apply()

    assert list(Heartbeat.objects.values_list("name", flat=True)) == ["worker"]


def test_heartbeat_from_beat_records_beat_by_its_sent_time(celery_worker, monkeypatch):
    """Sent from a beat process, the message carries its sent time; a real
    worker records beat from it and itself from now."""
    monkeypatch.setattr(tasks, "_in_beat", True)
    before = timezone.now()

    tasks.heartbeat.delay()

    deadline = time.monotonic() + 20
    while Heartbeat.objects.count() < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    seen = dict(Heartbeat.objects.values_list("name", "last_seen"))
    assert before <= seen["beat"] <= seen["worker"] <= timezone.now()


def test_heartbeat_reads_a_sent_time_from_the_message(celery_worker):
    sent = timezone.now() - dt.timedelta(seconds=40)

    tasks.heartbeat.apply_async(headers={tasks.BEAT_SENT_AT_HEADER: sent.isoformat()})

    deadline = time.monotonic() + 20
    while Heartbeat.objects.count() < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert Heartbeat.objects.get(name="beat").last_seen == sent
