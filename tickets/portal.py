"""The customer portal: a business sees its own tickets, incidents and calls.

Views are thin; every query is scoped to the signed-in user's business, so
one business can never see another's rows. Every time is shown in the
business's own zone, as its emails are.
"""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from incidents.models import Incident, IncidentUpdate
from incidents.services import update_public_text
from intake.models import Call

from .models import Ticket, TicketMessage

PAGE_ROWS = 50

# The required facts as the customer reads them (the first reply asks the
# same questions in full).
FACT_WORDS = {
    "business_line": "the phone line affected (the number your callers dial)",
    "started_at": "when it started, with the time zone",
    "symptoms": "what you expected to happen and what happened instead",
    "example_call": "an example call: the caller's number or the call ID",
    "workaround": "anything you tried to work around it (or that you haven't)",
}


def _business_for(request):
    portal = getattr(request.user, "portal", None)
    return portal.business if portal is not None else None


def _not_linked(request):
    return render(
        request,
        "portal/not_linked.html",
        {"support_email": settings.SUPPORT_EMAIL},
        status=403,
    )


def _customer_updates():
    return Prefetch(
        "updates",
        queryset=IncidentUpdate.objects.filter(customer_facing=True).order_by(
            "-created_at"
        ),
        to_attr="customer_updates",
    )


@login_required
def portal_home(request):
    if request.user.is_staff and not hasattr(request.user, "portal"):
        return redirect("admin:index")
    business = _business_for(request)
    if business is None:
        return _not_linked(request)
    zone = business.zone
    tickets = (
        Ticket.objects.filter(business=business)
        .select_related("incident")
        .order_by("-received_at")[:PAGE_ROWS]
    )
    incidents = list(
        Incident.objects.filter(affected_businesses=business)
        .exclude(status=Incident.Status.RESOLVED)
        .prefetch_related(_customer_updates())
        .order_by("-opened_at")
    )
    for incident in incidents:
        latest = incident.customer_updates[:1]
        incident.latest_text = (
            update_public_text(update=latest[0], zone=zone) if latest else ""
        )
    calls = Call.objects.filter(business=business).order_by("-created_at")[:PAGE_ROWS]
    with timezone.override(zone):
        return render(
            request,
            "portal/home.html",
            {
                "business": business,
                "zone": zone,
                "tickets": tickets,
                "incidents": incidents,
                "calls": calls,
            },
        )


@login_required
def portal_ticket(request, reference: str):
    business = _business_for(request)
    if business is None:
        return _not_linked(request)
    ticket = get_object_or_404(
        Ticket.objects.select_related("incident"),
        business=business,
        reference=reference,
    )
    # Internal notes stay internal.
    messages = ticket.messages.exclude(direction=TicketMessage.Direction.NOTE)
    missing = [FACT_WORDS[fact] for fact in ticket.missing_facts]
    with timezone.override(business.zone):
        return render(
            request,
            "portal/ticket.html",
            {
                "business": business,
                "ticket": ticket,
                "messages": messages,
                "missing": missing,
            },
        )
