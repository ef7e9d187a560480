"""Provider webhooks, mounted under /webhooks/ by afterhours.urls."""

from django.urls import path

from . import webhooks

urlpatterns = [
    path(
        "twilio/voice/",
        webhooks.twilio_voice_status,
        name="webhook-twilio-voice",
    ),
]
