"""`manage.py call_summary_sign`: what the README's "Try it" posts."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from intake.models import WebhookEvent

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "call-summary.json"
URL = "/webhooks/calls/summary/"


def sign(path: Path) -> str:
    out = StringIO()
    call_command("call_summary_sign", str(path), stdout=out)
    return out.getvalue().strip()


@pytest.mark.django_db
def test_the_sample_report_signed_by_the_command_is_accepted(settings):
    settings.CALL_SUMMARY_WEBHOOK_SECRET = "try-it-secret"

    response = Client().post(
        URL,
        data=SAMPLE.read_bytes(),
        content_type="application/json",
        HTTP_X_AFTERHOURS_SIGNATURE=sign(SAMPLE),
    )

    assert response.status_code == 200, response.content
    assert WebhookEvent.objects.get().payload["call_id"].startswith("CA")


@pytest.mark.django_db
def test_a_body_changed_after_signing_is_refused(settings, tmp_path):
    settings.CALL_SUMMARY_WEBHOOK_SECRET = "try-it-secret"
    header = sign(SAMPLE)

    response = Client().post(
        URL,
        data=SAMPLE.read_bytes().replace(b"urgent", b"routine"),
        content_type="application/json",
        HTTP_X_AFTERHOURS_SIGNATURE=header,
    )

    assert response.status_code == 403
    assert not WebhookEvent.objects.exists()


def test_without_a_secret_the_command_says_so(settings):
    settings.CALL_SUMMARY_WEBHOOK_SECRET = ""

    with pytest.raises(CommandError, match="CALL_SUMMARY_WEBHOOK_SECRET"):
        sign(SAMPLE)
