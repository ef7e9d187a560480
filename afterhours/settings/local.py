"""Local development: runs on a bare machine with embedded defaults.

SQLite and a filesystem broker under `var/`, so web, worker and beat work
without any server. Set DATABASE_URL and CELERY_BROKER_URL to use PostgreSQL
and Redis instead.
"""

from .base import *  # noqa: F403
from .base import ANYMAIL, VAR_DIR, env

# Empty values (a copied .env.example) mean the embedded defaults too.
DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="") or "local-development-only"
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[]) or [
    "127.0.0.1",
    "localhost",
]

# Postmark's inbound format needs only basic auth, so the README's sample
# request is a plain curl.
ANYMAIL_ESP = env("ANYMAIL_ESP", default="") or "postmark"

# Known development secrets so the README's sample requests work as written.
ANYMAIL["WEBHOOK_SECRET"] = ANYMAIL["WEBHOOK_SECRET"] or "dev:dev-inbound-secret"
ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"] = (
    ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"] or "dev-mailgun-signing-key"
)
TWILIO_AUTH_TOKEN = (
    env("TWILIO_AUTH_TOKEN", default="") or "dev_auth_token_000000000000000"
)
CALL_SUMMARY_WEBHOOK_SECRET = (
    env("CALL_SUMMARY_WEBHOOK_SECRET", default="") or "dev-call-summary-secret"
)
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="") or "http://127.0.0.1:8000"

BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="") or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        # Otherwise kombu writes its control exchange to ./control.
        "control_folder": str(BROKER_DIR / "control"),
    }
