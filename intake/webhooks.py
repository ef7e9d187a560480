"""Provider webhooks: verify, keep in the inbox, answer. Nothing else here."""

import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .calls import CallEventInvalid, call_status_event_store
from .twilio_signature import twilio_request_valid

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def twilio_voice_status(request: HttpRequest) -> HttpResponse:
    """Twilio Voice status callback.

    403 unless signed with our auth token; a duplicate or late callback
    still gets 200 (the inbox decides what it changes), so Twilio never
    retries a callback we already hold.
    """
    if not twilio_request_valid(request):
        return HttpResponse("invalid signature", status=403, content_type="text/plain")
    payload = {
        key: values[0] if len(values) == 1 else values
        for key, values in request.POST.lists()
    }
    try:
        call_status_event_store(payload=payload)
    except CallEventInvalid as exc:
        logger.warning("twilio voice callback refused: %s", exc)
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    return HttpResponse(status=200)
