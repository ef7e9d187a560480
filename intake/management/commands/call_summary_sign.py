import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from intake.call_summary import call_summary_signature


class Command(BaseCommand):
    help = (
        "Print the X-Afterhours-Signature header value the call provider would "
        "send for an end-of-call report (the file's bytes as they are posted), "
        "signed now with CALL_SUMMARY_WEBHOOK_SECRET. For trying the webhook by "
        "hand: the signature is good for five minutes."
    )

    def add_arguments(self, parser):
        parser.add_argument("body_file", help="file with the JSON body to post")

    def handle(self, *args, body_file, **options):
        secret = settings.CALL_SUMMARY_WEBHOOK_SECRET
        if not secret:
            raise CommandError("CALL_SUMMARY_WEBHOOK_SECRET is not set")
        try:
            body = Path(body_file).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {body_file}: {exc}") from exc
        timestamp = int(time.time())
        signature = call_summary_signature(
            secret=secret, timestamp=timestamp, body=body
        )
        self.stdout.write(f"t={timestamp},v1={signature}")
