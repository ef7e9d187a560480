from pathlib import Path
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from twilio.request_validator import RequestValidator


class Command(BaseCommand):
    help = (
        "Print the X-Twilio-Signature Twilio would send for a form body posted "
        "to URL, signed with TWILIO_AUTH_TOKEN. For trying the webhooks by hand."
    )

    def add_arguments(self, parser):
        parser.add_argument("url", help="the full URL the request is posted to")
        parser.add_argument("body_file", help="file with the form-encoded body")

    def handle(self, *args, url, body_file, **options):
        if not settings.TWILIO_AUTH_TOKEN:
            raise CommandError("TWILIO_AUTH_TOKEN is not set")
        try:
            body = Path(body_file).read_text().strip()
        except OSError as exc:
            raise CommandError(f"cannot read {body_file}: {exc}") from exc
        params = dict(parse_qsl(body, keep_blank_values=True))
        validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
        self.stdout.write(validator.compute_signature(url, params))
