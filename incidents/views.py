from django.db.models import Prefetch
from django.shortcuts import render

from .models import Incident, IncidentUpdate
from .services import incident_public_zone, update_public_text


def status_page(request):
    """Public status: open incidents and their customer-facing timeline.

    Names no business: affected customers see their own detail in the portal.
    Each incident's times are shown in its public zone (the zone its stored
    update text uses), named.
    """
    incidents = list(
        Incident.objects.exclude(status=Incident.Status.RESOLVED)
        .prefetch_related(
            Prefetch(
                "updates",
                queryset=IncidentUpdate.objects.filter(customer_facing=True).order_by(
                    "-created_at"
                ),
                to_attr="customer_updates",
            ),
            "affected_businesses",
        )
        .order_by("-opened_at")
    )
    for incident in incidents:
        incident.public_zone = incident_public_zone(incident=incident)
        for update in incident.customer_updates:
            update.public_text = update_public_text(
                update=update, zone=incident.public_zone
            )
    return render(request, "status/page.html", {"incidents": incidents})
