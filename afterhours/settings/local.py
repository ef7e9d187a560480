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
# Where `make run` serves (the Procfile reads the same two variables; not
# PORT, which honcho sets differently for each Procfile line).
# Limitation: an IPv6 address is not bracketed for the URL or runserver.
WEB_HOST = env("WEB_HOST", default="") or "127.0.0.1"
WEB_PORT = env.int("WEB_PORT", default=0) or 8000
# Listening on every address, it is reached (and signed for) on loopback.
_SERVED_AS = "127.0.0.1" if WEB_HOST in ("0.0.0.0", "::") else WEB_HOST
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[]) or list(
    dict.fromkeys(["127.0.0.1", "localhost", _SERVED_AS])
)

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
# Twilio signs the URL it posts to; locally that is this server itself.
PUBLIC_BASE_URL = (
    env("PUBLIC_BASE_URL", default="") or f"http://{_SERVED_AS}:{WEB_PORT}"
)

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
        # How soon an idle worker sees a new task (kombu's default is 1 s):
        # a listing of the queue folder every 0.1 s costs next to nothing.
        "polling_interval": 0.1,
    }
    # Without a broker that pushes, Celery's worker loop (synloop) applies
    # the acks of finished tasks only between 2-second waits for a message,
    # and with its pool's prefetch (1 a process) full it waits the whole 2 s:
    # a burst of 20 calls went at a task pair every 2 s, the last SMS 58 s
    # after its webhook (README "Running it"). Room for a burst lets the pool
    # run without pauses.
    # Limitation: the filesystem transport deletes a message when the worker
    # takes it, so a worker killed (not stopped) loses what it holds, now up
    # to 32 messages; a warm or cold shutdown puts them back.
    CELERY_WORKER_PREFETCH_MULTIPLIER = 16
