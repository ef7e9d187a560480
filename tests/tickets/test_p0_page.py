"""Who a P0 wakes: support on-call always, the business's on-call only when
one of the business's own people wrote, and once per outage."""

import datetime as dt

import pytest
from django.conf import settings
from django.utils import timezone

from notifications.models import Notification
from tests.factories import TicketFactory
from tickets.services import p0_page_queue

HARBOR = "Harbor Plumbing & Heating"
DANA = "+16175550177"


def _p0(business, requester, **fields):
    return TicketFactory(
        business=business, requester_email=requester, priority="P0", **fields
    )


def _paged(ticket=None):
    pages = Notification.objects.filter(reason=Notification.Reason.P0_PAGE)
    if ticket is not None:
        pages = pages.filter(ticket=ticket)
    return sorted(pages.values_list("recipient", flat=True))


@pytest.mark.django_db
def test_a_contact_of_the_business_pages_its_on_call_and_ours(businesses):
    ticket = _p0(businesses[HARBOR], "dispatch@harborplumbing.example")
    p0_page_queue(ticket=ticket)
    assert _paged() == sorted([DANA, settings.SUPPORT_ONCALL_PHONE])


@pytest.mark.django_db
def test_a_colleague_on_the_business_domain_counts_as_the_business(businesses):
    ticket = _p0(businesses[HARBOR], "night.manager@harborplumbing.example")
    p0_page_queue(ticket=ticket)
    assert DANA in _paged()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "stranger", ["stranger1@gmail.example", "someone@elsewhere.example", ""]
)
def test_a_stranger_naming_the_business_line_pages_only_support(businesses, stranger):
    """Found by a new-user trial: eight strangers' emails naming Harbor's line
    woke Harbor's on-call eight times."""
    ticket = _p0(businesses[HARBOR], stranger)

    p0_page_queue(ticket=ticket)

    assert _paged() == [settings.SUPPORT_ONCALL_PHONE]
    assert ticket.events.filter(kind="p0_page_held").exists()


@pytest.mark.django_db
def test_several_p0s_from_one_business_wake_its_on_call_once(businesses):
    harbor = businesses[HARBOR]
    tickets = [_p0(harbor, "dispatch@harborplumbing.example") for _ in range(3)]

    for ticket in tickets:
        p0_page_queue(ticket=ticket)

    assert _paged().count(DANA) == 1
    assert _paged().count(settings.SUPPORT_ONCALL_PHONE) == 3
    assert tickets[1].events.filter(kind="p0_page_skipped").exists()


@pytest.mark.django_db
def test_after_the_quiet_window_a_new_p0_pages_the_business_again(businesses):
    harbor = businesses[HARBOR]
    first = _p0(harbor, "dispatch@harborplumbing.example")
    p0_page_queue(ticket=first)
    Notification.objects.filter(ticket=first).update(
        created_at=timezone.now() - dt.timedelta(minutes=31)
    )

    second = _p0(harbor, "dispatch@harborplumbing.example")
    p0_page_queue(ticket=second)

    assert DANA in _paged(second)
