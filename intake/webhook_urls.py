"""Provider webhooks, mounted under /webhooks/ by afterhours.urls."""

from django.urls import path

from . import webhooks
from .call_summary import call_summary_webhook
from .sms_status import twilio_sms_status

urlpatterns = [
    path(
        "twilio/voice/",
        webhooks.twilio_voice_status,
        name="webhook-twilio-voice",
    ),
    path(
        "twilio/sms-status/",
        twilio_sms_status,
        name="webhook-twilio-sms-status",
    ),
    path(
        "calls/summary/",
        call_summary_webhook,
        name="webhook-call-summary",
    ),
]
