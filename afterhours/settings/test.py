"""Tests: PostgreSQL and Redis on this machine, each run in its own namespace.

Parallel runs (several developers, CI) must not meet: the test database name
and the Redis key prefix carry the process id.
"""

import os

from .base import *  # noqa: F403
from .base import ANYMAIL, env

_RUN = os.environ.get("AFTERHOURS_TEST_RUN", str(os.getpid()))

SECRET_KEY = "test-only-secret-key"
DEBUG = False
ALLOWED_HOSTS = ["*"]
DATABASES = {
    "default": env.db(
        "DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/afterhours"
    )
}
DATABASES["default"]["TEST"] = {"NAME": f"test_afterhours_{_RUN}"}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"afterhours-test-{_RUN}:"}
CELERY_TASK_DEFAULT_QUEUE = f"afterhours-test-{_RUN}"

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# The processes a fault run starts (tests/faults) share no memory with the
# test: they write mail to files in this folder for it to read.
_MAIL_DIR = env("AFTERHOURS_TEST_MAIL_DIR", default="")
if _MAIL_DIR:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = _MAIL_DIR
ANYMAIL["WEBHOOK_SECRET"] = "test:inbound-secret"
ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"] = "test-mailgun-signing-key"
TWILIO_ACCOUNT_SID = "AC00000000000000000000000000000000"
TWILIO_AUTH_TOKEN = "test_auth_token_0000000000000000"
TWILIO_FROM_NUMBER = "+15005550006"
# Never the real Twilio from a test: the discard port on loopback refuses the
# connection; a test that sends starts standins.twilio and overrides this (a
# worker process started by a test gets the stand-in's URL from the env).
TWILIO_API_BASE_URL = env("TWILIO_API_BASE_URL", default="") or "http://127.0.0.1:9"
PUBLIC_BASE_URL = "https://afterhours.example.test"
CALL_SUMMARY_WEBHOOK_SECRET = "test-call-summary-secret"
# The call pipeline tests model a provider without end-of-call reports: the
# SMS goes on completion. Tests of the wait for a report override this.
CALL_SUMMARY_WAIT_SECONDS = env.int("AFTERHOURS_TEST_SUMMARY_WAIT_SECONDS", default=0)
SUPPORT_ONCALL_PHONE = "+16175550100"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = f"/tmp/afterhours-test-media-{_RUN}"
# A fault run's beat runs every sweep this often (seconds), so a restart is
# recovered from within the test's time; the schedule is otherwise as built.
_SWEEP_SECONDS = env.int("AFTERHOURS_TEST_SWEEP_SECONDS", default=0)
if _SWEEP_SECONDS > 0:
    CELERY_BEAT_SCHEDULE = {
        name: {
            **entry,
            "schedule": float(_SWEEP_SECONDS),
            "options": {**entry.get("options", {}), "expires": _SWEEP_SECONDS},
        }
        for name, entry in CELERY_BEAT_SCHEDULE.items()
    }
