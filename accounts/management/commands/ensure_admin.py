import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

# The file holds a password: only its owner may read it.
PRIVATE = 0o600
SET_IT = "set a new one with `manage.py changepassword {username}`"


class Command(BaseCommand):
    help = "Create the local admin login once and print how to sign in."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        if not settings.DEBUG:
            raise CommandError("ensure_admin is for local development only")
        credentials = Path(settings.VAR_DIR) / "admin-login.txt"
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser(username, "", password)
            _write_private(credentials, f"{username} {password}\n")
            shown = password
        elif credentials.exists():
            credentials.chmod(PRIVATE)
            shown = _stored_password(credentials, user)
        else:
            shown = "(unchanged; " + SET_IT.format(username=username) + ")"
        self.stdout.write(
            self.style.SUCCESS(
                f"Admin: {_site()}/admin/  user: {username}  password: {shown}"
            )
        )


def _site() -> str:
    # Where `make run` serves (WEB_HOST/WEB_PORT move it), not a fixed port.
    return (settings.PUBLIC_BASE_URL or "http://127.0.0.1:8000").rstrip("/")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 rather than chmod-ed after writing, so the password is
    # never readable by others, not even for a moment.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    path.chmod(PRIVATE)


def _stored_password(path: Path, user) -> str:
    """The password in the file while it still signs in; otherwise why not."""
    parts = path.read_text().split()
    username = user.get_username()
    if len(parts) != 2 or parts[0] != username:
        return (
            f"({path} is not readable as a login; "
            + SET_IT.format(username=username)
            + ")"
        )
    if not user.check_password(parts[1]):
        # Changed in admin since the file was written: printing the old one
        # would send whoever reads it to a failing sign-in.
        return (
            f"(changed since {path} was written; the file no longer matches. "
            "Use the password you set, or " + SET_IT.format(username=username) + ")"
        )
    return parts[1]
