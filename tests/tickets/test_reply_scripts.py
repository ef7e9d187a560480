"""Reply scripts: seeded from the field guide, editable in admin, used by the
first reply, rendered with placeholders in the customer's zone."""

import datetime as dt
import importlib

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError

from notifications.models import Notification
from tests.factories import BusinessFactory, TicketFactory
from tests.tickets.test_first_reply import ingest_case
from tickets import scripts, services
from tickets.guardrail import check_outgoing
from tickets.models import ReplyScript, Ticket

SEED = importlib.import_module("tickets.migrations.0003_seed_reply_scripts")

# The field guide's Support Scripts, as the customer wrote them (apostrophes
# straightened), with <time> where the next-update time goes.
FIELD_GUIDE = {
    "acknowledgement": (
        "We're seeing an issue that can affect call intake and notifications. "
        "We're actively investigating and will update you by <time>. If you have "
        "an urgent call now, please share the caller phone and issue summary so "
        "your on-call can follow up."
    ),
    "status-identified": (
        "We've identified the cause and are working on a fix. Notifications may "
        "be delayed for some calls. Next update by <time>. If needed, your "
        "on-call can place a manual callback."
    ),
    "resolved": (
        "This incident is resolved. Call intake and notifications are operating "
        "normally. If you notice any remaining issues, reply here and we'll "
        "follow up."
    ),
    "call-not-seen": (
        "We don't see that call in our system yet. We're checking upstream logs "
        "now. If you can share the caller number and time, we'll trace it "
        "immediately."
    ),
}


@pytest.fixture
def seeded(db):
    """The migration's seed, run again (a flushing test may have emptied it)."""
    SEED.seed(apps, None)
    return {script.slug: script for script in ReplyScript.objects.all()}


def _values(next_update="9:30 PM EST"):
    return {
        "next_update": next_update,
        "reference": "AH-1042",
        "workaround": scripts.DEFAULT_WORKAROUND,
        "business": "Harbor",
        "name": "Dana",
    }


def test_the_four_field_guide_scripts_are_seeded_word_for_word(seeded):
    for slug, wording in FIELD_GUIDE.items():
        rendered = seeded[slug].render(_values(next_update="<time>"))
        assert rendered == wording, slug
    assert "acknowledgement-p2" in seeded


def test_every_seeded_script_passes_the_never_say_check(seeded):
    for script in seeded.values():
        assert check_outgoing(script.render(_values())) == [], script.slug


def test_seeding_again_keeps_an_agents_edits(seeded):
    ReplyScript.objects.filter(slug="resolved").update(body="Edited by the lead.")
    SEED.seed(apps, None)

    assert ReplyScript.objects.get(slug="resolved").body == "Edited by the lead."
    assert ReplyScript.objects.count() == len(seeded)


def test_placeholders_fill_reference_workaround_business_and_name(db):
    script = ReplyScript(
        slug="x",
        name="x",
        body="{name}, {business} ({reference}): {workaround}. Next: {next_update}.",
    )
    assert script.render(_values()) == (
        "Dana, Harbor (AH-1042): your on-call can place a manual callback. "
        "Next: 9:30 PM EST."
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("Next update by {time}.", "unknown placeholder {time}"),
        ("Open brace { alone", "write a literal brace as {{ or }}"),
        ("Positional {0}", "unknown placeholder {0}"),
    ],
)
def test_a_script_with_a_bad_placeholder_is_refused_with_the_reason(body, problem):
    script = ReplyScript(slug="bad", name="Bad", body=body)
    with pytest.raises(ValidationError) as error:
        script.clean()
    assert problem in str(error.value)


def test_the_first_reply_uses_the_stored_acknowledgement(businesses, seeded):
    ReplyScript.objects.filter(slug="acknowledgement").update(
        body="Edited: we're on it and will write again by {next_update} ({reference})."
    )

    ingest_case("T01.eml")

    ticket = Ticket.objects.get()
    body = Notification.objects.get(ticket=ticket, reason="first_reply").body
    assert (
        f"Edited: we're on it and will write again by 11:22 PM EST "
        f"({ticket.reference})." in body
    )


def test_a_broken_stored_script_falls_back_to_the_default_wording(businesses, seeded):
    ReplyScript.objects.filter(slug="acknowledgement").update(body="Broken {oops")

    ingest_case("T01.eml")

    body = Notification.objects.get(reason="first_reply").body
    assert scripts.ACKNOWLEDGEMENT["P0"].format(time="11:22 PM EST") in body


def test_without_stored_scripts_the_first_reply_keeps_the_field_guide(businesses):
    ReplyScript.objects.all().delete()

    ingest_case("T01.eml")

    body = Notification.objects.get(reason="first_reply").body
    assert scripts.ACKNOWLEDGEMENT["P0"].format(time="11:22 PM EST") in body


def test_a_script_renders_the_next_update_in_the_customers_zone(seeded):
    business = BusinessFactory(time_zone="America/Denver")
    ticket = TicketFactory(business=business, requester_name="Luis")

    text = services.ticket_reply_render(
        ticket=ticket,
        slug="status-identified",
        next_update_at=dt.datetime(2026, 12, 8, 3, 0, tzinfo=dt.UTC),
    )

    assert "Next update by 8:00 PM MST on Monday, Dec 7." in text


def test_scripts_are_editable_in_admin_and_checked(admin_client, seeded):
    script = seeded["resolved"]
    url = f"/admin/tickets/replyscript/{script.pk}/change/"
    assert admin_client.get(url).status_code == 200

    refused = admin_client.post(
        url, {"slug": "resolved", "name": "Resolved", "body": "Bye {when}"}
    )
    assert refused.status_code == 200
    assert "unknown placeholder {when}" in refused.content.decode()

    saved = admin_client.post(
        url,
        {"slug": "resolved", "name": "Resolved", "body": "Resolved ({reference})."},
    )
    assert saved.status_code == 302
    script.refresh_from_db()
    assert script.body == "Resolved ({reference})."
