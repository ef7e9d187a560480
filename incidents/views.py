from django.db.models import Prefetch
from django.shortcuts import render

from .models import Incident, IncidentUpdate


def status_page(request):
    """Public status: open incidents and their customer-facing timeline.

    Names no business: affected customers see their own detail in the portal.
    """
    incidents = (
        Incident.objects.exclude(status=Incident.Status.RESOLVED)
        .prefetch_related(
            Prefetch(
                "updates",
                queryset=IncidentUpdate.objects.filter(customer_facing=True).order_by(
                    "-created_at"
                ),
                to_attr="customer_updates",
            )
        )
        .order_by("-opened_at")
    )
    return render(request, "status/page.html", {"incidents": incidents})
