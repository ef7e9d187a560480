from io import StringIO

from django.core.management import call_command

from tests.conftest import fixture_path


def test_twilio_sign_reproduces_the_signature_twilio_sent_for_the_case():
    """The shared case gives Twilio's own signature for this body and URL."""
    out = StringIO()
    call_command(
        "twilio_sign",
        "https://afterhours.example.test/webhooks/twilio/voice/",
        str(fixture_path("webhooks", "voice-status-completed.form")),
        stdout=out,
    )
    assert out.getvalue().strip() == "0Dz+tXzjcpCvksq/+VS2cwA1rWU="
