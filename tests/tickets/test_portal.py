import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

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


# --- Polish from a new-user trial ---------------------------------------------


def test_portal_times_are_in_the_business_zone_not_utc(client):
    """The customer's emails use their zone; the portal did not."""
    business = BusinessFactory(time_zone="America/Chicago")
    _signed_in(client, business)
    year = timezone.now().year
    due = dt.datetime(year, 7, 1, 3, 30, tzinfo=dt.UTC)
    ticket = TicketFactory(business=business, next_update_due=due)
    CallFactory(business=business, started_at=due)
    incident = IncidentFactory(next_update_due=due)
    incident.affected_businesses.add(business)

    home = client.get(reverse("portal-home")).content.decode()
    page = client.get(
        reverse("portal-ticket", args=[ticket.reference])
    ).content.decode()

    assert home.count("Jun 30, 10:30 PM CDT") == 3
    assert "Jun 30, 10:30 PM CDT" in page
    assert "UTC" not in home + page


def test_portal_times_carry_the_year_when_it_is_not_this_year(client):
    business = BusinessFactory(time_zone="America/Chicago")
    _signed_in(client, business)
    next_year = timezone.now().year + 1
    due = dt.datetime(next_year, 1, 15, 4, 0, tzinfo=dt.UTC)
    TicketFactory(business=business, next_update_due=due)

    home = client.get(reverse("portal-home")).content.decode()

    assert f"Jan 14, {next_year}, 10:00 PM CST" in home


def test_missing_facts_are_asked_for_in_plain_words(client):
    business = BusinessFactory()
    _signed_in(client, business)
    ticket = TicketFactory(business=business, symptoms="SMS late", business_line="")

    page = client.get(
        reverse("portal-ticket", args=[ticket.reference])
    ).content.decode()

    assert "when it started, with the time zone" in page
    assert "the phone line affected" in page
    assert "an example call" in page
    for internal in ("started_at", "example_call", "workaround", "business_line"):
        assert internal not in page


def test_a_login_without_a_business_gets_a_page_saying_what_to_do(client, settings):
    client.force_login(UserFactory())

    response = client.get(reverse("portal-home"))

    assert response.status_code == 403
    page = response.content.decode()
    assert "not linked to a business" in page
    assert settings.SUPPORT_EMAIL in page
    assert "Sign out" in page
    assert "<main>" in page


def test_a_permission_refusal_elsewhere_uses_our_layout(client):
    """An admin page a staff login has no permission for."""
    client.force_login(UserFactory(is_staff=True))

    response = client.get("/admin/accounts/business/")

    assert response.status_code == 403
    page = response.content.decode()
    assert "<main>" in page
    assert "You can't open this page" in page


def test_password_reset_routes_are_removed_and_the_login_says_what_to_do(
    client, settings
):
    """They rendered as "Django site admin" and mailed outside the outbox."""
    for path in (
        "/accounts/password_reset/",
        "/accounts/password_reset/done/",
        "/accounts/reset/done/",
    ):
        assert client.get(path).status_code == 404, path

    login = client.get(reverse("login")).content.decode()
    assert "Forgot your password?" in login
    assert settings.SUPPORT_EMAIL in login


def test_password_change_is_in_our_layout(client):
    business = BusinessFactory()
    portal_user = _signed_in(client, business)

    form = client.get(reverse("password_change"))
    done = client.post(
        reverse("password_change"),
        {
            "old_password": "pw",
            "new_password1": "a-long-new-passphrase-42",
            "new_password2": "a-long-new-passphrase-42",
        },
        follow=True,
    )

    for response in (form, done):
        page = response.content.decode()
        assert response.status_code == 200
        assert "Django" not in page
        assert "<main>" in page
    assert "Your password is changed" in done.content.decode()
    portal_user.user.refresh_from_db()
    assert portal_user.user.check_password("a-long-new-passphrase-42")
    assert "Change password" in client.get(reverse("portal-home")).content.decode()


def test_portal_shows_an_update_stored_with_a_raw_placeholder_filled(client):
    """Updates stored before the fix kept "{next_update}" in their text."""
    business = BusinessFactory(time_zone="America/Chicago")
    _signed_in(client, business)
    due = dt.datetime(timezone.now().year, 7, 1, 3, 30, tzinfo=dt.UTC)
    incident = IncidentFactory(next_update_due=due)
    incident.affected_businesses.add(business)
    IncidentUpdateFactory(
        incident=incident, body="Next update by {next_update}.", next_update_at=due
    )

    page = client.get(reverse("portal-home")).content.decode()

    assert "{next_update}" not in page
    assert "Next update by 10:30 PM CDT" in page


def test_ticket_page_query_count_does_not_grow_with_messages(
    client, django_assert_max_num_queries
):
    business = BusinessFactory()
    _signed_in(client, business)
    ticket = TicketFactory(business=business)
    TicketMessageFactory(ticket=ticket)
    url = reverse("portal-ticket", args=[ticket.reference])
    with django_assert_max_num_queries(20) as few:
        client.get(url)
    for _ in range(10):
        TicketMessageFactory(ticket=ticket)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(url).status_code == 200
