"""The health sweep opens one P0 incident when the pipeline goes quiet.

One per component however often or concurrently it runs; support on-call
paged through the outbox (by email too when SMS is what is failing); an
internal note once when the check recovers; never resolved by itself.
"""

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from incidents import health, services
from incidents.models import Incident, IncidentUpdate
from notifications.models import Notification
from tests.factories import CallFactory

from .health_rows import owed, voice_callback

ONCALL_EMAIL = "oncall@afterhours.example"
M = dt.timedelta(minutes=1)


@pytest.fixture(autouse=True)
def oncall(settings):
    settings.SUPPORT_ONCALL_PHONE = "+16175550100"
    settings.SUPPORT_ONCALL_EMAIL = ONCALL_EMAIL


def pages() -> list[tuple[str, str]]:
    return sorted(
        Notification.objects.filter(reason=Notification.Reason.P0_PAGE).values_list(
            "channel", "recipient"
        )
    )


def notes(incident: Incident) -> list[str]:
    return list(
        incident.updates.filter(customer_facing=False)
        .order_by("id")
        .values_list("body", flat=True)
    )


@pytest.mark.django_db
def test_sms_owed_ten_minutes_opens_one_p0_and_pages_by_sms_and_email():
    now = timezone.now()
    stuck = owed(channel="sms", created_at=now - 11 * M)

    health.health_sweep(now=now)
    health.health_sweep(now=now + M)

    incident = Incident.objects.get()
    assert incident.component == "sms"
    assert incident.priority == "P0"
    assert incident.opened_by_health_check
    assert incident.owner is None  # as correlation opens them: the clock pages
    assert incident.is_open
    assert incident.title == "Call summaries by text message may be delayed"
    assert not incident.updates.filter(customer_facing=True).exists()
    [note] = notes(incident)
    assert note.startswith("Health check failing: Are outbound notifications")
    assert "owed_sms=1" in note
    assert "paged by SMS and email" in note
    assert stuck.recipient not in note
    assert pages() == [("email", ONCALL_EMAIL), ("sms", "+16175550100")]
    page = Notification.objects.get(reason="p0_page", channel="sms")
    assert page.incident == incident
    assert f"#{incident.pk}" in page.body
    assert "+1617555" not in page.body


@pytest.mark.django_db
def test_silence_opens_a_call_intake_p0_paged_by_sms():
    now = dt.datetime(2025, 3, 11, 7, 0, tzinfo=dt.UTC)  # 03:00 in New York
    CallFactory()
    voice_callback(now - 61 * M)

    health.health_sweep(now=now)

    incident = Incident.objects.get()
    assert incident.component == "call_intake"
    assert incident.opened_by_health_check
    assert "Silence" in notes(incident)[0]
    assert pages() == [("sms", "+16175550100")]


@pytest.mark.django_db
def test_recovery_is_noted_once_and_the_incident_stays_open():
    now = timezone.now()
    stuck = owed(channel="sms", created_at=now - 11 * M)
    health.health_sweep(now=now)
    incident = Incident.objects.get()

    Notification.objects.filter(pk=stuck.pk).update(state="delivered")
    health.health_sweep(now=now + M)
    health.health_sweep(now=now + 2 * M)

    incident.refresh_from_db()
    assert incident.is_open
    failing, recovered = notes(incident)
    assert recovered.startswith("Health check recovered: ")
    assert "resolve it once customers are told" in recovered

    # Failing again while the incident is open: one note, no second page,
    # then one more recovery note when it clears.
    again = owed(channel="sms", created_at=now - 9 * M)
    health.health_sweep(now=now + 3 * M)
    health.health_sweep(now=now + 4 * M)
    Notification.objects.filter(pk=again.pk).update(state="delivered")
    health.health_sweep(now=now + 5 * M)

    assert Incident.objects.count() == 1
    assert [n.split(":")[0] for n in notes(incident)] == [
        "Health check failing",
        "Health check recovered",
        "Health check failing",
        "Health check recovered",
    ]
    assert len(pages()) == 2


@pytest.mark.django_db
def test_an_incident_open_for_the_component_gets_a_note_not_a_second_one():
    now = timezone.now()
    agents = services.incident_open(
        title="Text messages delayed", priority="P1", component="sms"
    )
    owed(channel="sms", created_at=now - 11 * M)

    health.health_sweep(now=now)
    health.health_sweep(now=now + M)

    assert list(Incident.objects.values_list("pk", flat=True)) == [agents.pk]
    [note] = notes(agents)
    assert note.startswith("Health check failing: ")
    assert pages() == []


@pytest.mark.django_db
def test_a_resolved_incident_does_not_stop_a_new_one():
    now = timezone.now()
    owed(channel="email", created_at=now - 11 * M)
    health.health_sweep(now=now)
    first = Incident.objects.get()
    services.incident_post_update(
        incident=first,
        author=None,
        status="resolved",
        body="",
        next_update_at=None,
        now=now + M,
    )

    health.health_sweep(now=now + 2 * M)

    assert Incident.objects.filter(component="email").count() == 2
    assert Incident.objects.exclude(status="resolved").get().pk != first.pk


def _sweep_together(now: dt.datetime, workers: int = 2) -> list[BaseException]:
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=10)
            health.health_sweep(now=now)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lock", ["component lock", "constraint only"])
def test_two_sweeps_at_once_open_one_incident_and_page_once(monkeypatch, lock):
    if lock == "constraint only":
        monkeypatch.setattr(services, "component_lock", lambda component: None)
    now = timezone.now()
    owed(channel="sms", created_at=now - 11 * M)

    errors = _sweep_together(now)

    assert errors == []
    incident = Incident.objects.get()
    assert pages() == [("email", ONCALL_EMAIL), ("sms", "+16175550100")]
    assert len(notes(incident)) == 1
    assert IncidentUpdate.objects.count() == 1
