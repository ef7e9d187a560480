"""Settings read from the environment behave for a new user and for production."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRINT_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "secret": bool(settings.SECRET_KEY),
    "engine": settings.DATABASES["default"]["ENGINE"],
    "options": settings.DATABASES["default"].get("OPTIONS", {}),
    "broker": settings.CELERY_BROKER_URL,
    "twilio_token": bool(settings.TWILIO_AUTH_TOKEN),
    "inbound_secret": settings.ANYMAIL["WEBHOOK_SECRET"],
    "esp": settings.ANYMAIL_ESP,
}))
"""


def _settings(module: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "TWILIO_AUTH_TOKEN"):
        clean.pop(name, None)
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": module, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_empty_values_from_a_copied_env_example_keep_the_local_defaults():
    """Every variable set but empty, as `cp .env.example .env` then filling
    nothing in would give: the README's sample requests must still work."""
    run = _settings(
        "afterhours.settings.local",
        DJANGO_SECRET_KEY="",
        DATABASE_URL="",
        CELERY_BROKER_URL="",
        TWILIO_AUTH_TOKEN="",
        ANYMAIL_WEBHOOK_SECRET="",
        ANYMAIL_ESP="",
        DJANGO_ALLOWED_HOSTS="",
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["secret"] and seen["twilio_token"]
    assert seen["engine"] == "django.db.backends.sqlite3"
    assert seen["broker"] == "filesystem://"
    assert seen["inbound_secret"] == "dev:dev-inbound-secret"
    assert seen["esp"] == "postmark"


def test_the_embedded_sqlite_database_waits_for_its_lock_instead_of_failing():
    run = _settings("afterhours.settings.local")
    options = json.loads(run.stdout.strip().splitlines()[-1])["options"]
    assert options["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in options["init_command"]
    assert options["timeout"] >= 20


def test_env_example_as_copied_sets_nothing():
    active = [
        line
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert active == []


def test_production_refuses_to_start_without_its_secrets():
    run = _settings("afterhours.settings.production")
    assert run.returncode != 0
    assert "cannot start in production without" in run.stderr
    assert "TWILIO_AUTH_TOKEN" in run.stderr


def test_every_variable_the_settings_read_is_listed_in_env_example():
    import re

    read = set()
    for module in (ROOT / "afterhours" / "settings").glob("*.py"):
        if module.name == "test.py":
            continue
        read |= set(
            re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"', module.read_text())
        )
    listed = set(
        re.findall(
            r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M
        )
    )
    assert read - listed == set()
