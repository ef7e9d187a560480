import json

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Business, OnCallContact, PhoneLine
from tests.conftest import fixture_path

CUSTOMERS = str(fixture_path("businesses.json"))


@pytest.mark.django_db
def test_import_creates_every_business_with_lines_contacts_and_on_call():
    call_command("import_businesses", CUSTOMERS)

    assert Business.objects.count() == 6
    cedar = Business.objects.get(name="Cedar Ridge Veterinary Clinic")
    assert sorted(cedar.phone_lines.values_list("number", flat=True)) == [
        "+13125550118",
        "+13125550119",
    ]
    assert cedar.time_zone == "America/Chicago"
    assert cedar.open_days == [0, 1, 2, 3, 4]
    lakeshore = Business.objects.get(name="Lakeshore HVAC")
    assert lakeshore.open_days == [0, 1, 2, 3, 4, 5]
    on_call = OnCallContact.objects.get(business=cedar)
    assert on_call.phone == "+13125550120"
    assert on_call.email == "oncall@cedarridgevet.example"


@pytest.mark.django_db
def test_second_import_changes_nothing(capsys):
    call_command("import_businesses", CUSTOMERS)
    before = list(PhoneLine.objects.order_by("pk").values())
    capsys.readouterr()

    call_command("import_businesses", CUSTOMERS)

    assert "0 created, 0 updated, 6 unchanged" in capsys.readouterr().out
    assert list(PhoneLine.objects.order_by("pk").values()) == before


@pytest.mark.django_db
def test_bad_record_is_refused_with_its_name_and_nothing_is_written(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            [
                {"name": "Fine Co", "time_zone": "America/New_York"},
                {"name": "Nowhere Ltd", "time_zone": "Mars/Olympus"},
            ]
        )
    )

    with pytest.raises(CommandError, match="Nowhere Ltd"):
        call_command("import_businesses", str(bad))
    assert not Business.objects.exists()


@pytest.mark.django_db
def test_create_only_keeps_what_admin_changed_on_existing_businesses(capsys):
    """`make run` imports the demo list on every start: an operator's fixes
    in admin (a new line, another on-call contact, the Airtable base) must
    survive it."""
    call_command("import_businesses", CUSTOMERS)
    harbor = Business.objects.get(name="Harbor Plumbing & Heating")
    harbor.airtable_base_id = "appHARBOR00000000"
    harbor.save(update_fields=["airtable_base_id"])
    PhoneLine.objects.create(business=harbor, number="+19995550100")
    OnCallContact.objects.create(business=harbor, name="Backup", phone="+1617555")
    Business.objects.filter(name="Lakeshore HVAC").delete()
    capsys.readouterr()

    call_command("import_businesses", CUSTOMERS, "--create-only")

    assert "1 created, 0 updated, 5 unchanged" in capsys.readouterr().out
    harbor.refresh_from_db()
    assert harbor.airtable_base_id == "appHARBOR00000000"
    assert harbor.phone_lines.filter(number="+19995550100").exists()
    assert harbor.on_call_contacts.count() == 2
    assert Business.objects.get(name="Lakeshore HVAC").phone_lines.exists()
