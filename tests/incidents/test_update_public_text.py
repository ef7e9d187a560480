"""An incident update's public text: placeholders filled, times with their year.

The status page and the portal showed "Next update by {next_update}." for an
update whose words carried the placeholder: only the emails filled it. And a
next update of 9999-12-31 23:59 was accepted and emailed as "Friday, Dec 31".
"""

import datetime as dt

import pytest
from django.urls import reverse

from incidents import services
from incidents.models import IncidentUpdate
from incidents.services import NextUpdateRequired, incident_post_update, local_time
from notifications.models import Notification
from tests.factories import IncidentFactory, IncidentUpdateFactory, TicketFactory
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

# Monday 8 December 2026, 22:30 in New York, 21:30 in Chicago.
NOW = dt.datetime(2026, 12, 8, 3, 30, tzinfo=dt.UTC)
IN_30 = NOW + dt.timedelta(minutes=30)


@pytest.fixture
def incident(businesses):
    """An SMS incident for Harbor (New York) and Cedar (Chicago), one open
    ticket each."""
    harbor = businesses["Harbor Plumbing & Heating"]
    cedar = businesses["Cedar Ridge Veterinary Clinic"]
    incident = services.incident_open(
        title="SMS notifications: reports from several customers",
        priority="P0",
        component="sms",
        opened_at=NOW - dt.timedelta(minutes=20),
        businesses=[harbor, cedar],
    )
    for business, address in (
        (harbor, "dispatch@harborplumbing.example"),
        (cedar, "frontdesk@cedarridgevet.example"),
    ):
        TicketFactory(
            business=business,
            requester_email=address,
            incident=incident,
            status=Ticket.Status.OPEN,
            priority="P0",
        )
    return incident


def _first_zone_name(incident) -> str:
    first = incident.affected_businesses.order_by("id").first()
    return first.time_zone


def _post(incident, **overrides):
    values = {
        "incident": incident,
        "author": None,
        "status": "identified",
        "body": "We've found the cause. Next update by {next_update}. "
        "Your reference is {reference}; {workaround}. Thanks, {name}.",
        "next_update_at": IN_30,
        "now": NOW,
    }
    return incident_post_update(**(values | overrides))


def test_the_stored_text_has_every_placeholder_filled(incident):
    update = _post(incident)

    update.refresh_from_db()
    assert "{" not in update.body and "}" not in update.body
    zone = _first_zone_name(incident)
    expected = "11:00 PM EST" if zone == "America/New_York" else "10:00 PM CST"
    assert f"Next update by {expected}." in update.body
    assert "your on-call can place a manual callback" in update.body


def test_the_public_text_names_no_business_and_no_ticket(incident):
    update = _post(incident, body="Update for {business} on {reference}.")

    update.refresh_from_db()
    for ticket in incident.tickets.all():
        assert ticket.reference not in update.body
        assert ticket.business.name not in update.body


def test_emails_keep_each_business_zone_while_the_stored_text_has_one(incident):
    _post(incident)

    harbor = Notification.objects.get(recipient="dispatch@harborplumbing.example")
    cedar = Notification.objects.get(recipient="frontdesk@cedarridgevet.example")
    assert "Next update by 11:00 PM EST." in harbor.body
    assert "Next update by 10:00 PM CST." in cedar.body
    harbor_ticket = Ticket.objects.get(requester_email=harbor.recipient)
    assert f"Your reference is {harbor_ticket.reference}" in harbor.body


def test_the_status_page_and_portal_show_no_raw_placeholder(incident, client):
    _post(incident)

    page = client.get(reverse("status")).content.decode()

    assert "{next_update}" not in page
    assert "We&#x27;ve found the cause. Next update by" in page


def test_the_status_page_fills_an_update_stored_before_the_fix(client):
    incident = IncidentFactory(next_update_due=IN_30)
    IncidentUpdateFactory(
        incident=incident,
        body="Next update by {next_update}. If needed, {workaround}.",
        next_update_at=IN_30,
        created_at=NOW,
    )

    page = client.get(reverse("status")).content.decode()

    assert "{" not in page.split("<main>")[1]
    assert "Next update by" in page
    assert "manual callback" in page


def test_status_page_query_count_does_not_grow_with_incidents(
    client, django_assert_max_num_queries, businesses
):
    def fill(rows):
        for _ in range(rows):
            incident = IncidentFactory(next_update_due=IN_30)
            incident.affected_businesses.add(*businesses.values())
            IncidentUpdateFactory(incident=incident, body="At {next_update}.")

    fill(2)
    with django_assert_max_num_queries(10) as few:
        client.get(reverse("status"))
    fill(10)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(reverse("status")).status_code == 200


@pytest.mark.parametrize(
    "later",
    [
        dt.timedelta(days=7, minutes=1),
        dt.timedelta(days=400),
        dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.UTC) - NOW,
    ],
)
def test_a_next_update_more_than_seven_days_out_is_refused(incident, later):
    with pytest.raises(NextUpdateRequired, match="within 7 days"):
        _post(incident, next_update_at=NOW + later)

    assert not IncidentUpdate.objects.exists()
    assert not Notification.objects.exists()


def test_a_next_update_seven_days_out_is_accepted(incident):
    update = _post(incident, next_update_at=NOW + dt.timedelta(days=7))

    assert update.pk is not None


def test_a_time_in_another_year_carries_its_year():
    zone = dt.UTC
    new_year = dt.datetime(2027, 1, 1, 0, 30, tzinfo=dt.UTC)

    assert local_time(new_year, zone, NOW) == "12:30 AM UTC on Friday, Jan 1, 2027"
    assert local_time(IN_30, zone, NOW) == "4:00 AM UTC"
    assert (
        local_time(NOW + dt.timedelta(days=2), zone, NOW)
        == "3:30 AM UTC on Thursday, Dec 10"
    )


def test_the_admin_says_why_a_far_next_update_is_refused(admin_client, incident):
    page = admin_client.post(
        reverse("admin:incidents_incident_post_update", args=[incident.pk]),
        {
            "status": "identified",
            "body": "We've found the cause.",
            "next_update_at": "9999-12-31 23:59",
            "customer_facing": "on",
        },
    )

    assert page.status_code == 200
    assert "within 7 days" in page.content.decode()
    assert not IncidentUpdate.objects.filter(customer_facing=True).exists()
