"""Admin input that cannot break the desk: businesses and tickets.

The business and ticket change pages refuse bad values with a message that
says what to write instead, and the lists and pages still open (200, never
500) for rows stored before the checks existed.
"""

import datetime as dt

import pytest
from django.forms import modelform_factory
from django.utils import timezone

from accounts.models import Business, OnCallContact, PhoneLine
from tests.factories import BusinessFactory, TicketFactory
from tickets.admin import TicketAdminForm
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

BUSINESS_ADD = "/admin/accounts/business/add/"
TICKET_ADD = "/admin/tickets/ticket/add/"


def _inline_management(prefixes: dict[str, int]) -> dict:
    data = {}
    for prefix, rows in prefixes.items():
        data |= {
            f"{prefix}-TOTAL_FORMS": str(rows),
            f"{prefix}-INITIAL_FORMS": "0",
            f"{prefix}-MIN_NUM_FORMS": "0",
            f"{prefix}-MAX_NUM_FORMS": "1000",
        }
    return data


def _business_post(**fields) -> dict:
    data = {
        "name": "Mars Base Plumbing",
        "time_zone": "America/Chicago",
        "open_days": ["0", "1", "2", "3", "4"],
        "opens_at": "08:00",
        "closes_at": "18:00",
        "airtable_base_id": "",
        **_inline_management({"phone_lines": 1, "contacts": 0, "on_call_contacts": 1}),
        "phone_lines-0-number": "+13125550150",
        "phone_lines-0-label": "main",
        "on_call_contacts-0-name": "Sam",
        "on_call_contacts-0-phone": "+13125550151",
        "on_call_contacts-0-email": "sam@marsbase.example",
        "on_call_contacts-0-order": "0",
    }
    return data | fields


def test_the_business_form_offers_zones_as_a_select_and_days_as_checkboxes(
    admin_client,
):
    page = admin_client.get(BUSINESS_ADD).content.decode()

    assert '<select name="time_zone"' in page
    assert '<option value="America/Chicago">' in page
    assert 'type="checkbox" name="open_days" value="6"' in page
    assert "Sun" in page


def test_a_good_business_saves_with_its_days_as_sorted_numbers(admin_client):
    response = admin_client.post(
        BUSINESS_ADD, _business_post(open_days=["4", "0", "2"])
    )

    assert response.status_code == 302
    business = Business.objects.get(name="Mars Base Plumbing")
    assert business.open_days == [0, 2, 4]
    assert business.time_zone == "America/Chicago"
    assert business.phone_lines.get().number == "+13125550150"


def test_the_trial_business_is_refused_field_by_field(admin_client):
    """Mars/Olympus, open days {"x": 1}, line "hello", on-call "call me"."""
    response = admin_client.post(
        BUSINESS_ADD,
        _business_post(
            time_zone="Mars/Olympus",
            open_days=["x"],
            **{
                "phone_lines-0-number": "hello",
                "on_call_contacts-0-phone": "call me",
                "on_call_contacts-0-email": "not an address",
            },
        ),
    )

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "time_zone" in form.errors
    assert "open_days" in form.errors
    lines, _, on_call = (
        inline.formset for inline in response.context["inline_admin_formsets"]
    )
    assert "E.164" in lines.forms[0].errors["number"][0]
    assert "E.164" in on_call.forms[0].errors["phone"][0]
    assert "email" in on_call.forms[0].errors
    assert not Business.objects.exists()
    assert not PhoneLine.objects.exists()
    assert not OnCallContact.objects.exists()


def test_closing_before_opening_is_refused_in_admin(admin_client):
    response = admin_client.post(
        BUSINESS_ADD, _business_post(opens_at="18:00", closes_at="08:00")
    )

    assert response.status_code == 200
    assert "after the opening time" in str(
        response.context["adminform"].form.errors["closes_at"]
    )


def test_business_pages_open_for_rows_stored_before_validation(admin_client):
    """The trial's row made the list answer 500 for everyone."""
    good = BusinessFactory(name="Good Co")
    bad = BusinessFactory(name="Bad Co")
    PhoneLine.objects.create(business=bad, number="hello")
    OnCallContact.objects.create(business=bad, name="Sam", phone="call me")
    Business.objects.filter(pk=bad.pk).update(
        time_zone="Mars/Olympus", open_days={"x": 1}
    )

    listing = admin_client.get("/admin/accounts/business/")
    change = admin_client.get(f"/admin/accounts/business/{bad.pk}/change/")
    filtered = admin_client.get(
        "/admin/accounts/business/", {"time_zone": "Mars/Olympus"}
    )

    assert listing.status_code == 200
    assert "Good Co" in listing.content.decode()
    assert "invalid open days" in listing.content.decode()
    assert change.status_code == 200
    # The stored zone is shown for what it is, not silently replaced.
    assert "Mars/Olympus (not a known time zone)" in change.content.decode()
    assert filtered.status_code == 200
    assert admin_client.get("/admin/accounts/phoneline/").status_code == 200
    assert admin_client.get("/admin/accounts/oncallcontact/").status_code == 200
    assert good.hours_display in listing.content.decode()


def test_fixing_the_zone_of_a_stored_bad_row_still_refuses_its_bad_days(
    admin_client,
):
    bad = BusinessFactory(name="Bad Co")
    Business.objects.filter(pk=bad.pk).update(
        time_zone="Mars/Olympus", open_days={"x": 1}
    )

    page = admin_client.post(
        f"/admin/accounts/business/{bad.pk}/change/",
        _business_post(name="Bad Co", open_days=["0", "1"]),
    )

    assert page.status_code == 302
    bad.refresh_from_db()
    assert bad.open_days == [0, 1]
    assert bad.time_zone == "America/Chicago"


# --- Tickets -------------------------------------------------------------------


def _ticket_post(business, **fields) -> dict:
    return {
        "business": str(business.pk),
        "status": "new",
        "priority": "P1",
        "subject": "Texts are late",
        "requester_email": "dispatch@harbor.example",
        "received_at_0": "",
        "escalations": "[]",
        "priority_reasons": "[]",
        **_inline_management({"messages": 0, "alerts": 0, "events": 0}),
    } | fields


def _received(moment: dt.datetime) -> dict:
    local = timezone.localtime(moment)
    return {"received_at_0": f"{local:%Y-%m-%d}", "received_at_1": f"{local:%H:%M}"}


def test_adding_a_ticket_in_admin_starts_its_clock(admin_client):
    """The add page answered 500: received_at was read-only and required."""
    business = BusinessFactory()
    received = timezone.now().replace(second=0, microsecond=0)

    response = admin_client.post(
        TICKET_ADD, _ticket_post(business, **_received(received))
    )

    assert response.status_code == 302
    ticket = Ticket.objects.get()
    assert ticket.received_at == received
    assert ticket.acknowledge_due == received + dt.timedelta(hours=1)
    assert ticket.next_update_due == received + dt.timedelta(hours=4)
    assert ticket.events.filter(kind="opened").exists()


def test_a_ticket_received_in_the_future_is_refused(admin_client):
    business = BusinessFactory()
    later = timezone.now() + dt.timedelta(days=2)

    response = admin_client.post(TICKET_ADD, _ticket_post(business, **_received(later)))

    assert response.status_code == 200
    assert "received_at" in response.context["adminform"].form.errors
    assert not Ticket.objects.exists()


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('["vip"]', "unknown escalation tag 'vip'"),
        ('{"high_value": true}', "a list"),
        ('["after_hours", "after_hours"]', "twice"),
        ("[1]", "unknown escalation tag"),
    ],
)
def test_escalations_must_be_known_tags(admin_client, value, words):
    ticket = TicketFactory()

    response = admin_client.post(
        f"/admin/tickets/ticket/{ticket.pk}/change/",
        _ticket_post(ticket.business, escalations=value),
    )

    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors["escalations"])
    assert words in errors
    assert "high_value" in errors


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("business_line", "hello"),
        ("business_line", "212 555"),
        ("example_call", "call me"),
        ("example_call", "CA123"),
        ("example_call", "CAzz" + "0" * 30),
    ],
)
def test_the_business_line_and_example_call_are_checked(admin_client, field, value):
    ticket = TicketFactory()

    response = admin_client.post(
        f"/admin/tickets/ticket/{ticket.pk}/change/",
        _ticket_post(ticket.business, **{field: value}),
    )

    assert response.status_code == 200
    assert "E.164" in " ".join(response.context["adminform"].form.errors[field])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("business_line", "+12125550191"),
        ("example_call", "+14155550142"),
        ("example_call", "CA" + "0123456789abcdef" * 2),
    ],
)
def test_good_lines_and_call_ids_are_saved(admin_client, field, value):
    ticket = TicketFactory()

    response = admin_client.post(
        f"/admin/tickets/ticket/{ticket.pk}/change/",
        _ticket_post(ticket.business, **{field: value}),
    )

    assert response.status_code == 302
    ticket.refresh_from_db()
    assert getattr(ticket, field) == value


def test_a_stored_odd_value_does_not_block_saving_the_ticket(admin_client):
    """Intake may have stored what the admin would refuse; an agent saving
    something else (a status, a reply) is not held up by it."""
    ticket = TicketFactory(example_call="call-7", escalations=["legacy_tag"])

    response = admin_client.post(
        f"/admin/tickets/ticket/{ticket.pk}/change/",
        _ticket_post(
            ticket.business,
            example_call="call-7",
            escalations='["legacy_tag"]',
            status="open",
        ),
    )

    assert response.status_code == 302
    ticket.refresh_from_db()
    assert ticket.status == "open"


def test_a_start_time_in_the_future_is_refused(admin_client):
    ticket = TicketFactory()
    later = timezone.localtime(timezone.now() + dt.timedelta(days=3))

    response = admin_client.post(
        f"/admin/tickets/ticket/{ticket.pk}/change/",
        _ticket_post(
            ticket.business,
            started_at_0=f"{later:%Y-%m-%d}",
            started_at_1=f"{later:%H:%M}",
        ),
    )

    assert response.status_code == 200
    assert "future" in " ".join(response.context["adminform"].form.errors["started_at"])


def test_a_form_showing_due_times_refuses_one_before_the_ticket_was_received():
    """The admin keeps due times read-only (the clock sets them); a form
    built on the admin's that shows them refuses absurd ones."""
    business = BusinessFactory()
    received = timezone.now() - dt.timedelta(hours=1)
    form_class = modelform_factory(
        Ticket,
        form=TicketAdminForm,
        fields=["business", "priority", "status", "received_at", "acknowledge_due"],
    )
    form = form_class(
        data={
            "business": business.pk,
            "priority": "P1",
            "status": "new",
            "received_at": received,
            "acknowledge_due": received - dt.timedelta(minutes=5),
        }
    )

    assert not form.is_valid()
    assert "before the ticket was received" in form.errors["acknowledge_due"][0]
