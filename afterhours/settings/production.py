"""Production: every secret must come from the environment.

A missing one stops start-up with a message naming it, rather than running
with a webhook that anyone could call.
"""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import ANYMAIL, env

_REQUIRED = [
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "ANYMAIL_WEBHOOK_SECRET",
    "TWILIO_AUTH_TOKEN",
    "CALL_SUMMARY_WEBHOOK_SECRET",
    "PUBLIC_BASE_URL",
]
_missing = [name for name in _REQUIRED if not env(name, default="")]
if _missing:
    raise ImproperlyConfigured(
        "afterhours cannot start in production without: " + ", ".join(_missing)
    )

DEBUG = False
CALL_SUMMARY_WEBHOOK_SECRET = env("CALL_SUMMARY_WEBHOOK_SECRET")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
ANYMAIL["WEBHOOK_SECRET"] = env("ANYMAIL_WEBHOOK_SECRET")
