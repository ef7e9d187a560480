"""Settings for the benchmarks: production-shaped, on this machine's servers.

Its own database and Redis key prefix, DEBUG off, quiet logs (a log line per
request would be part of what we measure, so only warnings are kept).
"""

from afterhours.settings.base import *  # noqa: F403
from afterhours.settings.base import ANYMAIL, env

SECRET_KEY = "bench-only-secret-key"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.urls"
DATABASES = {
    "default": env.db(
        "BENCH_DATABASE_URL",
        default="postgres://postgres@127.0.0.1:5432/afterhours_bench",
    )
}
DATABASES["default"]["CONN_MAX_AGE"] = 60
CELERY_BROKER_URL = env("BENCH_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": "afterhours-bench:"}
CELERY_TASK_DEFAULT_QUEUE = "afterhours-bench"
TWILIO_AUTH_TOKEN = "bench_auth_token_000000000000000"
PUBLIC_BASE_URL = ""
ANYMAIL["WEBHOOK_SECRET"] = "bench:inbound-secret"
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING"},
}
