import pytest
from django.urls import reverse

from incidents.models import Incident
from tests.factories import (
    BusinessFactory,
    CallFactory,
    IncidentFactory,
    IncidentUpdateFactory,
    PortalUserFactory,
    TicketFactory,
    TicketMessageFactory,
    UserFactory,
)
from tickets.models import TicketMessage

pytestmark = pytest.mark.django_db


def _signed_in(client, business):
    portal_user = PortalUserFactory(business=business)
    client.force_login(portal_user.user)
    return portal_user


def _fill(business, rows):
    for _ in range(rows):
        TicketFactory(business=business)
        CallFactory(business=business)
        incident = IncidentFactory()
        incident.affected_businesses.add(business)
        IncidentUpdateFactory(incident=incident)


def test_portal_shows_only_the_business_own_tickets_and_incidents(client):
    mine, other = BusinessFactory(), BusinessFactory()
    _signed_in(client, mine)
    my_ticket = TicketFactory(business=mine, subject="Texts late on line 2")
    TicketFactory(business=other, subject="Another company's secret")
    incident = IncidentFactory(title="SMS delays for some businesses")
    incident.affected_businesses.add(mine)
    IncidentUpdateFactory(incident=incident, body="Next update by 10:30 PM.")

    page = client.get(reverse("portal-home")).content.decode()

    assert my_ticket.reference in page
    assert "Texts late on line 2" in page
    assert "Another company" not in page
    assert "SMS delays for some businesses" in page
    assert "Next update by 10:30 PM." in page


def test_portal_home_query_count_does_not_grow_with_rows(
    client, django_assert_max_num_queries
):
    business = BusinessFactory()
    _signed_in(client, business)
    _fill(business, 2)
    with django_assert_max_num_queries(20) as few:
        client.get(reverse("portal-home"))
    _fill(business, 15)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("portal-home"))
    assert response.status_code == 200


def test_ticket_page_hides_internal_notes_and_other_businesses_tickets(client):
    mine, other = BusinessFactory(), BusinessFactory()
    _signed_in(client, mine)
    ticket = TicketFactory(business=mine)
    TicketMessageFactory(ticket=ticket, body="Our SMS stopped at 9pm")
    TicketMessageFactory(
        ticket=ticket, direction=TicketMessage.Direction.NOTE, body="agent-only"
    )
    foreign = TicketFactory(business=other)

    page = client.get(reverse("portal-ticket", args=[ticket.reference]))
    assert "Our SMS stopped at 9pm" in page.content.decode()
    assert "agent-only" not in page.content.decode()
    response = client.get(reverse("portal-ticket", args=[foreign.reference]))
    assert response.status_code == 404


def test_portal_requires_a_login_linked_to_a_business(client):
    assert client.get(reverse("portal-home")).status_code == 302
    client.force_login(UserFactory())
    assert client.get(reverse("portal-home")).status_code == 403


def test_status_page_lists_open_incidents_without_business_names(client):
    business = BusinessFactory(name="Harbor Plumbing")
    incident = IncidentFactory(title="Call summaries delayed")
    incident.affected_businesses.add(business)
    IncidentUpdateFactory(incident=incident, body="We see delays.")
    IncidentFactory(title="Old one", status=Incident.Status.RESOLVED)

    page = client.get(reverse("status")).content.decode()

    assert "Call summaries delayed" in page
    assert "We see delays." in page
    assert "Old one" not in page
    assert "Harbor Plumbing" not in page
