import pytest

from tests.factories import (
    BusinessFactory,
    CallFactory,
    IncidentFactory,
    PortalUserFactory,
    TicketFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def test_portal_login_sees_only_its_business_rows(client):
    mine, other = BusinessFactory(), BusinessFactory()
    client.force_login(PortalUserFactory(business=mine).user)
    ticket = TicketFactory(business=mine)
    TicketFactory(business=other)
    CallFactory(business=mine)
    CallFactory(business=other)
    incident = IncidentFactory()
    incident.affected_businesses.add(mine, other)
    IncidentFactory()

    tickets = client.get("/api/tickets/").json()["results"]
    calls = client.get("/api/calls/").json()["results"]
    incidents = client.get("/api/incidents/").json()["results"]

    assert [t["reference"] for t in tickets] == [ticket.reference]
    assert tickets[0]["missing_facts"] == [
        "business_line",
        "started_at",
        "symptoms",
        "example_call",
        "workaround",
    ]
    assert len(calls) == 1
    assert [i["id"] for i in incidents] == [incident.pk]


def test_staff_sees_everything_and_anonymous_nothing(client):
    TicketFactory()
    TicketFactory()
    assert client.get("/api/tickets/").status_code == 403
    client.force_login(UserFactory(is_staff=True))
    assert client.get("/api/tickets/").json()["count"] == 2


def test_ticket_list_query_count_is_constant(client, django_assert_num_queries):
    client.force_login(UserFactory(is_staff=True))
    TicketFactory()
    with django_assert_num_queries(4):
        client.get("/api/tickets/")
    for _ in range(20):
        TicketFactory()
    with django_assert_num_queries(4):
        client.get("/api/tickets/")
