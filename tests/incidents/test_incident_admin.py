"""Admin: post an update from the incident's page; the status page shows it."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents import services
from incidents.models import Incident, IncidentUpdate
from notifications.models import Notification
from tests.factories import TicketFactory
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def incident(businesses):
    harbor = businesses["Harbor Plumbing & Heating"]
    incident = services.incident_open(
        title="SMS notifications: reports from several customers",
        priority="P0",
        component="sms",
        businesses=[harbor],
    )
    TicketFactory(
        business=harbor,
        requester_email="dispatch@harborplumbing.example",
        incident=incident,
        status=Ticket.Status.OPEN,
        priority="P0",
    )
    return incident


def update_url(incident) -> str:
    return reverse("admin:incidents_incident_post_update", args=[incident.pk])


def in_an_hour() -> str:
    moment = timezone.now().astimezone(dt.UTC) + dt.timedelta(hours=1)
    return f"{moment:%Y-%m-%d %H:%M}"


def form(**overrides) -> dict:
    data = {
        "status": "identified",
        "body": "We've identified the cause. Next update by {next_update}.",
        "next_update_at": in_an_hour(),
        "customer_facing": "on",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def add_form(**fields) -> dict:
    """The add page's fields with its (empty, read-only) inlines' management."""
    for prefix in ("updates", "tickets", "clock_alerts"):
        fields[f"{prefix}-TOTAL_FORMS"] = "0"
        fields[f"{prefix}-INITIAL_FORMS"] = "0"
    return fields


def test_the_incident_page_links_to_posting_an_update(admin_client, incident):
    page = admin_client.get(
        reverse("admin:incidents_incident_change", args=[incident.pk])
    )

    assert page.status_code == 200
    assert update_url(incident) in page.content.decode()
    # Linked tickets are listed on the incident.
    assert incident.tickets.get().reference in page.content.decode()


def test_the_update_form_starts_from_the_script_for_the_chosen_status(
    admin_client, incident
):
    page = admin_client.get(update_url(incident) + "?script=identified")

    assert page.status_code == 200
    body = page.context["form"].initial["body"]
    assert body == services.update_script(status="identified")
    assert "{next_update}" in body
    assert page.context["form"].initial["next_update_at"] is not None

    resolved = admin_client.get(update_url(incident) + "?script=resolved")
    assert "This incident is resolved." in resolved.context["form"].initial["body"]


def test_words_we_cannot_stand_behind_are_shown_with_why_and_not_sent(
    admin_client, incident
):
    page = admin_client.post(
        update_url(incident), form(body="It's definitely fixed, guaranteed.")
    )

    assert page.status_code == 200
    html = page.content.decode()
    assert "It&#x27;s definitely fixed" in html
    assert "certainty about a fix" in html
    assert "guaranteed" in html and "an absolute" in html
    assert not IncidentUpdate.objects.exists()
    assert not Notification.objects.filter(reason="incident_update").exists()


def test_send_anyway_needs_a_reason_and_then_sends(admin_client, incident):
    body = "It's definitely fixed."
    page = admin_client.post(update_url(incident), form(body=body, send_anyway="on"))
    assert page.status_code == 200
    assert "Say why it should be sent anyway." in page.content.decode()
    assert not IncidentUpdate.objects.exists()

    sent = admin_client.post(
        update_url(incident),
        form(body=body, send_anyway="on", override_reason="carrier confirmed the fix"),
    )

    assert sent.status_code == 302
    update = IncidentUpdate.objects.get()
    assert update.override_reason == "carrier confirmed the fix"
    assert update.author.is_superuser
    assert Notification.objects.filter(reason="incident_update").count() >= 1


def test_a_customer_facing_update_without_a_next_update_time_is_refused(
    admin_client, incident
):
    page = admin_client.post(update_url(incident), form(next_update_at=""))

    assert page.status_code == 200
    assert "next-update time" in page.content.decode()
    assert not IncidentUpdate.objects.exists()


def test_a_good_update_moves_the_incident_and_tells_the_ticket(admin_client, incident):
    response = admin_client.post(update_url(incident), form())

    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.status == "identified"
    ticket = incident.tickets.get()
    assert Notification.objects.filter(reason="incident_update", ticket=ticket).exists()


def test_a_second_open_incident_for_one_component_is_refused_in_admin(
    admin_client, incident
):
    page = admin_client.post(
        reverse("admin:incidents_incident_add"),
        add_form(title="SMS again", component="sms", priority="P1"),
    )

    assert page.status_code == 200
    assert f"Incident #{incident.pk} is open for this component" in (
        page.content.decode()
    )
    assert Incident.objects.count() == 1


def test_an_incident_opened_in_admin_owes_its_first_update(admin_client, businesses):
    response = admin_client.post(
        reverse("admin:incidents_incident_add"),
        add_form(title="Portal slow", component="portal", priority="P1"),
    )

    assert response.status_code == 302
    incident = Incident.objects.get()
    assert incident.next_update_due == incident.opened_at + dt.timedelta(hours=4)
    assert incident.components == ["portal"]


def test_the_status_page_lists_open_incidents_with_customer_facing_updates(
    client, incident
):
    services.incident_post_update(
        incident=incident,
        author=None,
        status="identified",
        body="We've identified the cause.",
        next_update_at=timezone.now() + dt.timedelta(minutes=30),
    )
    services.incident_post_update(
        incident=incident,
        author=None,
        status="identified",
        body="Internal: carrier ticket 4411.",
        next_update_at=None,
        customer_facing=False,
    )
    resolved = services.incident_open(title="Old portal issue", priority="P2")
    services.incident_post_update(
        incident=resolved, author=None, status="resolved", body="", next_update_at=None
    )

    html = client.get(reverse("status")).content.decode()

    assert incident.title in html
    assert "We&#x27;ve identified the cause." in html
    assert "carrier ticket 4411" not in html
    assert "Old portal issue" not in html
    assert "Harbor" not in html
