"""The product's URLs plus two bare views to measure the webhook against."""

import uuid

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from afterhours.urls import urlpatterns as product_urlpatterns
from intake.models import WebhookEvent


@csrf_exempt
@require_POST
def bare_noop(request):
    return HttpResponse(status=200)


@csrf_exempt
@require_POST
def bare_insert(request):
    WebhookEvent.objects.create(
        provider="bench",
        kind="bare_insert",
        event_id=uuid.uuid4().hex,
        payload=request.POST.dict(),
    )
    return HttpResponse(status=200)


urlpatterns = [
    path("bench/noop/", bare_noop),
    path("bench/insert/", bare_insert),
    *product_urlpatterns,
]
