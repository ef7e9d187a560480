"""Settings shared by every environment, read from the environment.

Each environment module (local, test, production) imports this one and
changes only what differs. Every variable read here is listed in
`.env.example`.
"""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# A developer's .env configures the running product, never the test suite,
# which makes its own databases and broker keys.
if not os.environ.get("DJANGO_SETTINGS_MODULE", "").endswith(".test"):
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "anymail",
    "django_celery_beat",
    "accounts",
    "tickets",
    "incidents",
    "intake",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "afterhours.urls"
WSGI_APPLICATION = "afterhours.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# An empty DATABASE_URL (as a copied .env.example may have) means the
# embedded default, like an unset one.
DATABASES = {
    "default": env.db_url_config(
        env("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'afterhours.sqlite3'}"
    )
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Kept open between requests and between tasks, checked before reuse: a new
# PostgreSQL connection costs more CPU than most of our requests and tasks.
DATABASES["default"]["CONN_MAX_AGE"] = int(
    env("DATABASE_CONN_MAX_AGE", default="") or 60
)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Web, worker and beat share one file: WAL lets readers run beside the
    # writer, IMMEDIATE takes the write lock up front instead of failing
    # half-way, and the timeout waits for it rather than answering 500.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(VAR_DIR / "media"))
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/portal/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Public address and proxies -------------------------------------------
# The URL the providers post to; Twilio signs the URL it was given, so the
# webhook rebuilds it from this base when set.
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="")
# Peers (our own TLS proxies) whose X-Forwarded-Proto/Host headers we believe.
TRUSTED_PROXY_IPS = env.list("TRUSTED_PROXY_IPS", default=[])

# --- Sign-in throttling (accounts.sign_in_throttle) -----------------------
# Failed sign-ins (portal and admin) allowed per login name and per client
# address in the window; past either, sign-in answers 429 until the oldest
# failure leaves the window. The client address is REMOTE_ADDR, or the
# X-Forwarded-For hop our own proxies (TRUSTED_PROXY_IPS) saw.
LOGIN_FAILURES_PER_ACCOUNT = env.int("LOGIN_FAILURES_PER_ACCOUNT", default=5)
LOGIN_FAILURES_PER_CLIENT_IP = env.int("LOGIN_FAILURES_PER_CLIENT_IP", default=20)
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=900)

# --- Support desk ---------------------------------------------------------
SUPPORT_EMAIL = env("SUPPORT_EMAIL", default="support@afterhours.example")
SUPPORT_FROM_NAME = env("SUPPORT_FROM_NAME", default="Afterhours Support")
SUPPORT_ONCALL_PHONE = env("SUPPORT_ONCALL_PHONE", default="")
# Operations alerts (carrier filtering) and the fallback of SMS to the phone.
SUPPORT_ONCALL_EMAIL = env("SUPPORT_ONCALL_EMAIL", default="")
TICKET_REFERENCE_PREFIX = "AH"
# RFC 3834: at most this many automatic replies to one sender per hour.
AUTO_REPLY_LIMIT_PER_HOUR = env.int("AUTO_REPLY_LIMIT_PER_HOUR", default=3)

# --- Email (Anymail) ------------------------------------------------------
ANYMAIL_ESP = env("ANYMAIL_ESP", default="mailgun")
ANYMAIL = {
    "WEBHOOK_SECRET": env("ANYMAIL_WEBHOOK_SECRET", default=""),
    "MAILGUN_API_KEY": env("MAILGUN_API_KEY", default=""),
    "MAILGUN_WEBHOOK_SIGNING_KEY": env("MAILGUN_WEBHOOK_SIGNING_KEY", default=""),
    "POSTMARK_SERVER_TOKEN": env("POSTMARK_SERVER_TOKEN", default=""),
    "SENDGRID_API_KEY": env("SENDGRID_API_KEY", default=""),
}
_ESP_BACKENDS = {
    "mailgun": ("MAILGUN_API_KEY", "anymail.backends.mailgun.EmailBackend"),
    "postmark": ("POSTMARK_SERVER_TOKEN", "anymail.backends.postmark.EmailBackend"),
    "sendgrid": ("SENDGRID_API_KEY", "anymail.backends.sendgrid.EmailBackend"),
}
# Without the ESP's credentials mail is logged instead of sent (one masked
# line per message), so a bare machine can run the whole product.
_esp_key, _esp_backend = _ESP_BACKENDS.get(ANYMAIL_ESP, ("", ""))
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    default=_esp_backend
    if ANYMAIL.get(_esp_key)
    else "notifications.providers.email_log.LoggingEmailBackend",
)
DEFAULT_FROM_EMAIL = f"{SUPPORT_FROM_NAME} <{SUPPORT_EMAIL}>"
# Largest inbound webhook post read (ESPs deliver mail of tens of MB, Postmark
# up to 35 MB); only that view reads past DATA_UPLOAD_MAX_MEMORY_SIZE. A
# larger post is kept as its first bytes and size, for an agent.
INBOUND_EMAIL_MAX_BYTES = env.int("INBOUND_EMAIL_MAX_BYTES", default=40 * 1024 * 1024)
SERVER_EMAIL = SUPPORT_EMAIL

# --- Twilio ---------------------------------------------------------------
TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env("TWILIO_FROM_NUMBER", default="")
# Points the official client at a stand-in (tests, benchmarks).
TWILIO_API_BASE_URL = env("TWILIO_API_BASE_URL", default="")
# Messages a second one sender number may start (a US long code: 1).
TWILIO_SENDER_RATE_PER_SECOND = env.int("TWILIO_SENDER_RATE_PER_SECOND", default=1)
# An SMS not confirmed delivered this long after it was owed goes by email.
SMS_DELIVERY_CONFIRM_SECONDS = env.int("SMS_DELIVERY_CONFIRM_SECONDS", default=300)
# Re-sends of an SMS reported unreachable (30003, 30005) before giving up.
SMS_UNREACHABLE_RETRIES = env.int("SMS_UNREACHABLE_RETRIES", default=3)

# --- Airtable -------------------------------------------------------------
AIRTABLE_API_KEY = env("AIRTABLE_API_KEY", default="")
AIRTABLE_CALLS_TABLE = env("AIRTABLE_CALLS_TABLE", default="Calls")
AIRTABLE_API_BASE_URL = env("AIRTABLE_API_BASE_URL", default="")
# Airtable allows 5 requests a second per base and, past that, refuses the
# base for 30 seconds; both are configurable so tests can shrink the wait.
AIRTABLE_REQUESTS_PER_SECOND = env.int("AIRTABLE_REQUESTS_PER_SECOND", default=5)
AIRTABLE_RATE_LIMIT_WAIT_SECONDS = env.float(
    "AIRTABLE_RATE_LIMIT_WAIT_SECONDS", default=30.0
)
AIRTABLE_TIMEOUT_SECONDS = env.float("AIRTABLE_TIMEOUT_SECONDS", default=20.0)

# --- Celery ---------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
CELERY_TASK_ALWAYS_EAGER = False
# A task is acknowledged only when it finishes and requeued when its worker
# dies, so a killed worker loses nothing; tasks are written to be repeatable.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# Unset, Celery's Django fixup closes every database connection before and
# after each task, so each task opened a new one (half the CPU of a call at
# 10 calls a second, bench/delivery.py). Set, it closes them every 2 x this
# many tasks; afterhours.celery closes the broken or expired ones meanwhile.
CELERY_DB_REUSE_MAX = 1000
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    # Expires before the next run so a stalled worker never piles sweeps up.
    "airtable-sweep": {
        "task": "intake.tasks.airtable_sweep",
        "schedule": 10.0,
        "options": {"expires": 9},
    },
    "outbox-sweep": {
        "task": "notifications.tasks.outbox_sweep",
        "schedule": 30.0,
        "options": {"expires": 29},
    },
    "call-events-sweep": {
        "task": "intake.tasks.call_events_sweep",
        "schedule": 60.0,
        "options": {"expires": 59},
    },
    "incident-clock": {
        "task": "incidents.tasks.incident_clock_sweep",
        "schedule": 60.0,
        "options": {"expires": 59},
    },
    "report-events-sweep": {
        "task": "intake.tasks.report_events_sweep",
        "schedule": 60.0,
        "options": {"expires": 59},
    },
    "sms-fallback-sweep": {
        "task": "notifications.tasks.sms_fallback_sweep",
        "schedule": 30.0,
        "options": {"expires": 29},
    },
    # An interval (counted in UTC), never a local crontab: a clock change
    # neither skips nor doubles a run, and each run takes all that is due.
    "ticket-sla-sweep": {
        "task": "tickets.tasks.sla_sweep",
        "schedule": 60.0,
        "options": {"expires": 59},
    },
    # Beat stamps each heartbeat with its send time; the worker that runs it
    # records both (incidents.health, check 5 of the runbook).
    "heartbeat": {
        "task": "incidents.tasks.heartbeat",
        "schedule": 30.0,
        "options": {"expires": 29},
    },
    "health-check-sweep": {
        "task": "incidents.tasks.health_check_sweep",
        "schedule": 60.0,
        "options": {"expires": 59},
    },
}

# --- Health checks (incidents.health) ---------------------------------------
# No voice callback for this long, counting only time when at least one
# business is after hours, is silence: a P0 incident for call intake.
HEALTH_CALL_SILENCE_MINUTES = env.int("HEALTH_CALL_SILENCE_MINUTES", default=60)
# An SMS or email owed this long and not sent: the field guide's P0.
HEALTH_OUTBOX_STALE_MINUTES = env.int("HEALTH_OUTBOX_STALE_MINUTES", default=10)
# A voice callback not processed this long: call intake failing, not slow.
HEALTH_INTAKE_STALE_MINUTES = env.int("HEALTH_INTAKE_STALE_MINUTES", default=10)
# A call not in Airtable this long after its last change: the write failing.
HEALTH_AIRTABLE_STALE_MINUTES = env.int("HEALTH_AIRTABLE_STALE_MINUTES", default=10)
# Beat or worker not seen this long (heartbeat every 30 s): down.
HEALTH_HEARTBEAT_STALE_SECONDS = env.int("HEALTH_HEARTBEAT_STALE_SECONDS", default=120)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}

LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Admin searches put phone numbers and addresses in query strings.
    "filters": {
        "mask_request_personal_data": {
            "()": "afterhours.privacy.RequestLogMaskingFilter"
        },
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        # Django's own runserver line, as its default logging has it.
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "django.server": {
            "class": "logging.StreamHandler",
            "formatter": "django.server",
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # runserver's access log. We configure no gunicorn access log; one
        # added (--access-logfile) wants this filter on "gunicorn.access".
        "django.server": {
            "handlers": ["django.server"],
            "filters": ["mask_request_personal_data"],
            "level": "INFO",
            "propagate": False,
        },
    },
}
CALL_SUMMARY_WEBHOOK_SECRET = env("CALL_SUMMARY_WEBHOOK_SECRET", default="")
# How long a call's SMS waits for the missing half (completion or end-of-call
# report) so one SMS carries the summary; 0 sends on completion. Without a
# webhook secret no report can arrive, so nothing waits.
CALL_SUMMARY_WAIT_SECONDS = env.int("CALL_SUMMARY_WAIT_SECONDS", default=60)
