import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create the local admin login once and print how to sign in."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        if not settings.DEBUG:
            raise CommandError("ensure_admin is for local development only")
        credentials = settings.BASE_DIR / "var" / "admin-login.txt"
        user_model = get_user_model()
        if not user_model.objects.filter(username=username).exists():
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser(username, "", password)
            credentials.parent.mkdir(parents=True, exist_ok=True)
            credentials.write_text(f"{username} {password}\n")
        elif credentials.exists():
            username, password = credentials.read_text().split()
        else:
            password = "(unchanged; set it with `manage.py changepassword`)"
        self.stdout.write(
            self.style.SUCCESS(
                "Admin: http://127.0.0.1:8000/admin/  "
                f"user: {username}  password: {password}"
            )
        )
