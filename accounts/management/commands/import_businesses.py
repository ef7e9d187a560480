import json

from django.core.management.base import BaseCommand, CommandError

from accounts.services import BusinessImportError, business_import


class Command(BaseCommand):
    help = "Create or update businesses from a customer list (JSON). Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("file", help="path to the JSON customer list")
        parser.add_argument(
            "--create-only",
            action="store_true",
            help="only add businesses not here yet; leave existing ones as they "
            "are (what `make run` does, so changes made in admin stand)",
        )

    def handle(self, *args, file, create_only=False, **options):
        try:
            with open(file, encoding="utf-8") as fh:
                records = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from exc
        if not isinstance(records, list):
            raise CommandError(f"{file}: expected a JSON list of businesses")
        try:
            result = business_import(records=records, create_only=create_only)
        except BusinessImportError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"businesses: {result.created} created, {result.updated} updated, "
            f"{result.unchanged} unchanged"
        )
