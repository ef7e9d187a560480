"""The customer portal: a business sees its own tickets, incidents and calls.

Views are thin; every query is scoped to the signed-in user's business, so
one business can never see another's rows.
"""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render

from incidents.models import Incident, IncidentUpdate
from intake.models import Call

from .models import Ticket, TicketMessage

PAGE_ROWS = 50


def _business_for(request):
    portal = getattr(request.user, "portal", None)
    if portal is None:
        raise PermissionDenied("This login is not linked to a business.")
    return portal.business


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
    tickets = (
        Ticket.objects.filter(business=business)
        .select_related("incident")
        .order_by("-received_at")[:PAGE_ROWS]
    )
    incidents = (
        Incident.objects.filter(affected_businesses=business)
        .exclude(status=Incident.Status.RESOLVED)
        .prefetch_related(_customer_updates())
        .order_by("-opened_at")
    )
    calls = Call.objects.filter(business=business).order_by("-created_at")[:PAGE_ROWS]
    return render(
        request,
        "portal/home.html",
        {
            "business": business,
            "tickets": tickets,
            "incidents": incidents,
            "calls": calls,
        },
    )


@login_required
def portal_ticket(request, reference: str):
    business = _business_for(request)
    ticket = get_object_or_404(
        Ticket.objects.select_related("incident"),
        business=business,
        reference=reference,
    )
    # Internal notes stay internal.
    messages = ticket.messages.exclude(direction=TicketMessage.Direction.NOTE)
    return render(
        request,
        "portal/ticket.html",
        {"business": business, "ticket": ticket, "messages": messages},
    )
