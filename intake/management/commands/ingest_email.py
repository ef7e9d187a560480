"""Feed a raw .eml file through the inbound email path, synchronously."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from intake.email import parse_email
from intake.services import inbound_email_process, inbound_email_store


class Command(BaseCommand):
    help = (
        "Store a raw message and turn it into a ticket through the same "
        "services as the inbound webhook. The message's Date is its arrival "
        "unless --arrived-now is given."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="a raw RFC 5322 message (.eml)")
        parser.add_argument(
            "--json", action="store_true", help="print the result as one JSON object"
        )
        parser.add_argument(
            "--arrived-now",
            action="store_true",
            help="take the current time as the arrival, not the message's Date "
            "(to try a sample as a new message rather than replay a night)",
        )

    def handle(self, *args, **options):
        path = Path(options["file"])
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc

        # A replayed message arrives when its Date says it did, so triage
        # (after hours, SLA clocks) sees the night it was written.
        received_at = None if options["arrived_now"] else parse_email(raw).date
        received_at = received_at or timezone.now()
        inbound_email, _ = inbound_email_store(
            raw=raw, esp="file", received_at=received_at
        )
        result = inbound_email_process(inbound_email_id=inbound_email.pk)

        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), sort_keys=True))
            return
        inbound_email.refresh_from_db()
        self.stdout.write(
            f"inbound email {inbound_email.pk}: {inbound_email.status}"
            + (f" ({inbound_email.reason})" if inbound_email.reason else "")
        )
        for key, value in result.as_dict().items():
            self.stdout.write(f"  {key}: {value}")
