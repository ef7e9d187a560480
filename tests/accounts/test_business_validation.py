"""Business data is refused at the model: every form and the import agree.

A new-user trial saved a business with time zone Mars/Olympus, open days
{"x": 1}, phone line "hello" and on-call phone "call me"; the business list
then failed for everyone, that customer's email was set aside and P0 pages
went to "call me". These tests keep those inputs.
"""

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.forms import modelform_factory

from accounts.models import Business, Contact, OnCallContact, PhoneLine
from tests.factories import BusinessFactory

pytestmark = pytest.mark.django_db


def _errors(instance) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        instance.full_clean()
    return caught.value.message_dict


@pytest.mark.parametrize("zone", ["Mars/Olympus", "EST-ish", "", "america/new_york"])
def test_a_time_zone_that_is_not_an_iana_zone_is_refused(zone):
    errors = _errors(Business(name="Nowhere Ltd", time_zone=zone, open_days=[0]))

    assert "time_zone" in errors
    if zone:
        assert zone in errors["time_zone"][0]


@pytest.mark.parametrize(
    "days",
    [
        {"x": 1},
        "Mon-Fri",
        [0, 7],
        [-1],
        [1, 1],
        ["1"],
        [True],
        [1.5],
        None,
    ],
)
def test_open_days_must_be_a_list_of_distinct_weekday_numbers(days):
    errors = _errors(Business(name="Odd Days", time_zone="UTC", open_days=days))

    assert "open_days" in errors


@pytest.mark.parametrize("days", [[], [0, 1, 2, 3, 4], [6, 5]])
def test_open_days_as_weekday_numbers_are_accepted(days):
    Business(name="Fine Days", time_zone="Europe/Paris", open_days=days).full_clean()


@pytest.mark.parametrize(
    ("opens", "closes"), [(dt.time(18), dt.time(8)), (dt.time(9), dt.time(9))]
)
def test_opening_time_must_come_before_closing_time(opens, closes):
    errors = _errors(
        Business(
            name="Backwards",
            time_zone="UTC",
            open_days=[0],
            opens_at=opens,
            closes_at=closes,
        )
    )

    assert "closes_at" in errors
    assert "after the opening time" in errors["closes_at"][0]


@pytest.mark.parametrize(
    "number", ["hello", "call me", "2125550191", "+1 212 555 0191", "+1212", "+0123"]
)
def test_a_phone_line_must_be_a_possible_e164_number(number):
    errors = _errors(PhoneLine(business=BusinessFactory(), number=number))

    assert "E.164" in errors["number"][0]


def test_a_phone_line_written_locally_is_told_its_e164_form():
    errors = _errors(PhoneLine(business=BusinessFactory(), number="(212) 555-0191"))

    assert "+12125550191" in errors["number"][0]


def test_an_on_call_phone_must_be_e164_and_the_email_valid():
    business = BusinessFactory()
    errors = _errors(
        OnCallContact(business=business, name="Sam", phone="call me", email="sam@")
    )

    assert "E.164" in errors["phone"][0]
    assert "email" in errors

    OnCallContact(
        business=business, name="Sam", phone="+14155550142", email="sam@x.example"
    ).full_clean()


def test_an_on_call_contact_needs_a_phone_or_an_email():
    errors = _errors(OnCallContact(business=BusinessFactory(), name="Nobody"))

    assert "phone or an email" in " ".join(errors["__all__"])


def test_a_contact_email_must_be_an_address():
    errors = _errors(Contact(business=BusinessFactory(), email="front desk"))

    assert "email" in errors


def test_any_model_form_refuses_what_the_model_refuses():
    form_class = modelform_factory(Business, fields=["name", "time_zone", "open_days"])
    form = form_class(
        data={"name": "Mars Base", "time_zone": "Mars/Olympus", "open_days": '{"x": 1}'}
    )

    assert not form.is_valid()
    assert set(form.errors) == {"time_zone", "open_days"}


# --- Rows stored before validation ------------------------------------------


def _stored_bad_business(**fields) -> Business:
    """A row written past validation (as rows were before it existed)."""
    business = BusinessFactory()
    values = {"time_zone": "Mars/Olympus", "open_days": {"x": 1}} | fields
    Business.objects.filter(pk=business.pk).update(**values)
    return Business.objects.get(pk=business.pk)


@pytest.mark.parametrize(
    "days", [{"x": 1}, "Mon-Fri", [0, "x", 9, None], 3, [True, 1], [1, 1]]
)
def test_hours_display_never_fails_on_a_stored_bad_row(days):
    business = _stored_bad_business(open_days=days)

    shown = business.hours_display

    assert "invalid open days" in shown
    assert "08:00-18:00" in shown


def test_hours_display_shows_valid_days_by_name():
    business = BusinessFactory(open_days=[4, 0, 1])

    assert business.hours_display == "Mon,Tue,Fri 08:00-18:00"
    assert BusinessFactory(open_days=[]).hours_display == "closed 08:00-18:00"


def test_a_stored_unknown_zone_falls_back_so_times_can_still_be_read(caplog):
    business = _stored_bad_business(open_days=[0, 1, 2, 3, 4])

    assert business.zone == ZoneInfo("America/New_York")
    assert f"business {business.pk}" in caplog.text
    assert "Mars/Olympus" in caplog.text


def test_opening_hours_of_a_stored_bad_row_count_only_its_valid_days():
    business = _stored_bad_business(time_zone="UTC", open_days=[0, "x", 9])
    monday_noon = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)

    assert business.open_day_numbers == [0]
    assert business.is_open_at(monday_noon)
    assert not business.is_open_at(monday_noon + dt.timedelta(days=1))


# --- The import ---------------------------------------------------------------


def _import(tmp_path, record: dict):
    path = tmp_path / "customers.json"
    path.write_text(json.dumps([{"name": "Fine Co", "time_zone": "UTC"}, record]))
    call_command("import_businesses", str(path))


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ({"phone_lines": ["hello"]}, "hello"),
        ({"on_call": [{"name": "Sam", "phone": "call me"}]}, "call me"),
        ({"on_call": [{"name": "Sam", "email": "sam@"}]}, "email"),
        ({"on_call": [{"name": "Sam"}]}, "phone or an email"),
        ({"contacts": ["front desk"]}, "email"),
        ({"business_hours": {"open": "18:00", "close": "08:00"}}, "opening time"),
    ],
)
def test_the_import_refuses_what_the_model_refuses_and_writes_nothing(
    tmp_path, record, words
):
    with pytest.raises(CommandError, match="Nowhere Ltd") as caught:
        _import(tmp_path, {"name": "Nowhere Ltd", "time_zone": "UTC"} | record)

    assert words in str(caught.value)
    assert not Business.objects.exists()


def test_email_from_a_business_with_a_stored_bad_zone_still_opens_a_ticket(
    businesses,
):
    """It was set aside with ZoneInfoNotFoundError."""
    from intake.services import inbound_email_process, inbound_email_store
    from tickets.models import Ticket

    harbor = businesses["Harbor Plumbing & Heating"]
    Business.objects.filter(pk=harbor.pk).update(time_zone="Mars/Olympus")
    raw = (
        b"From: Dana <dispatch@harborplumbing.example>\r\n"
        b"To: support@afterhours.example\r\n"
        b"Subject: No texts since 9pm\r\n"
        b"Date: Tue, 08 Dec 2026 03:00:00 +0000\r\n"
        b"Message-ID: <mars-zone@harborplumbing.example>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Our line 617-555-0142 has sent no call summaries since 9pm.\r\n"
    )
    stored, _ = inbound_email_store(raw=raw, esp="mailgun")

    inbound_email_process(inbound_email_id=stored.pk)

    stored.refresh_from_db()
    assert stored.status != "rejected", stored.reason
    ticket = Ticket.objects.get(business=harbor)
    assert ticket.acknowledge_due is not None


@pytest.mark.parametrize(
    "fields",
    [
        {"open_days": {"x": 1}},
        {"open_days": [9]},
        {"open_days": "Mon-Fri"},
    ],
)
def test_a_p2_email_from_a_business_with_stored_bad_hours_still_opens_a_ticket(
    businesses, fields
):
    """Its business day could not be counted, so the email was set aside."""
    from intake.services import inbound_email_process, inbound_email_store
    from tickets.models import Ticket

    harbor = businesses["Harbor Plumbing & Heating"]
    Business.objects.filter(pk=harbor.pk).update(**fields)
    raw = (
        b"From: Dana <dispatch@harborplumbing.example>\r\n"
        b"To: support@afterhours.example\r\n"
        b"Subject: Summary font is small\r\n"
        b"Date: Tue, 08 Dec 2026 15:00:00 +0000\r\n"
        b"Message-ID: <bad-hours@harborplumbing.example>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Minor formatting issue in summaries, data still correct.\r\n"
    )
    stored, _ = inbound_email_store(raw=raw, esp="mailgun")

    inbound_email_process(inbound_email_id=stored.pk)

    stored.refresh_from_db()
    assert stored.status != "rejected", stored.reason
    ticket = Ticket.objects.get(business=harbor)
    assert ticket.priority == "P2"
    assert ticket.acknowledge_due > ticket.received_at
