import logging

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Prefetch
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.log import log_response
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from .health import FAIL, health_report
from .models import Incident, IncidentUpdate
from .services import incident_public_zone, update_public_text

logger = logging.getLogger(__name__)


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


# Exempt so that a POST gets require_safe's 405, not the CSRF 403: the view
# changes nothing and reads no cookie.
@csrf_exempt
@require_safe
@never_cache
def healthz(request):
    """For an outside uptime monitor: the five answers, 503 when one fails.

    No login, and nothing personal or internal: statuses and one-line
    answers (public by `HealthAnswer`'s rule), no figures. A fixed handful
    of indexed queries however busy the day. A 503 is logged once, at
    warning with the failing checks' names, so a monitor polling through
    an outage does not fill the error log.
    """
    report = health_report()
    body = {
        "status": report.status,
        "checked_at": report.checked_at.isoformat(),
        "checks": [
            {
                "name": check.name,
                "question": check.question,
                "status": check.status,
                "answer": check.answer,
            }
            for check in report.checks
        ],
    }
    response = JsonResponse(body, status=503 if report.status == FAIL else 200)
    if report.status == FAIL:
        # log_response marks the response logged, so django.request does
        # not log it again as an error.
        log_response(
            "Service Unavailable: %s (failing: %s)",
            request.path,
            ", ".join(c.name for c in report.checks if c.status == FAIL),
            response=response,
            request=request,
            logger=logger,
            level="warning",
        )
    return response


@staff_member_required
@never_cache
def health_page(request):
    """Staff only: the runbook's five answers in order, with their figures."""
    report = health_report()
    context = {
        **admin.site.each_context(request),
        "title": "Health: the runbook's five checks",
        "report": report,
        "checks": [
            {
                "number": number,
                "check": check,
                "figures": sorted(check.figures.items()),
            }
            for number, check in enumerate(report.checks, start=1)
        ],
    }
    return render(request, "admin/health.html", context)
