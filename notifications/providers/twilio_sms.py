"""Twilio SMS through the official client.

The only module that talks to the Messages API. It answers in our own
types: `SmsResult` on success, `TransientProviderError` or
`PermanentProviderError` (with Twilio's code) on failure.
"""

import functools
import logging
from dataclasses import dataclass
from datetime import datetime

import phonenumbers
import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from twilio.base import values
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from afterhours.privacy import mask_phone

from .errors import PermanentProviderError, ProviderError, TransientProviderError

logger = logging.getLogger(__name__)
# The library logs ten INFO lines per request (and query parameters, which
# can hold phone numbers); only its warnings are wanted, unless LOGGING says
# otherwise for this logger.
http_logger = logging.getLogger(f"{__name__}.http")
if http_logger.level == logging.NOTSET:
    http_logger.setLevel(logging.WARNING)

TWILIO_API_ORIGIN = "https://api.twilio.com"
# The library's default is no timeout at all: one hung connection would hold
# a worker thread for good.
REQUEST_TIMEOUT_SECONDS = 10.0
SMS_STATUS_CALLBACK_PATH = "/webhooks/twilio/sms-status/"

TIMEOUT = "timeout"
INVALID_NUMBER = "21211"
OPTED_OUT = "21610"
NOT_MOBILE = "21614"
UNREACHABLE = "30003"
CARRIER_FILTERED = "30007"
# Codes after which this recipient cannot get an SMS from this sender as
# things stand; sending again would only fail again. Twilio answers some at
# once (the 21xxx), others in a delivery report (the 30xxx): region not
# enabled, no route, message blocked by the handset, a landline.
PERMANENT_CODES = frozenset(
    {INVALID_NUMBER, "21408", OPTED_OUT, "21612", NOT_MOBILE, "30004", "30006"}
)
# The handset is off or out of reach for now (30003), or the carrier does
# not know it yet (30005): worth a few more tries.
UNREACHABLE_CODES = frozenset({UNREACHABLE, "30005"})
# The carrier filtered the message as spam: resending the same text from the
# same number only feeds the filter; operations must look at the wording or
# the sender's registration.
FILTERED_CODES = frozenset({CARRIER_FILTERED})


class SmsFailureKind:
    """What a failed delivery means for the next step."""

    PERMANENT = "permanent"
    UNREACHABLE = "unreachable"
    FILTERED = "filtered"
    # Anything else (30001 queue overflow, 30008 unknown, no code at all):
    # treated like unreachable, a bounded number of re-sends.
    OTHER = "other"


def sms_failure_kind(code: str) -> str:
    """Classify a Twilio error code from a delivery report or an answer."""
    if code in PERMANENT_CODES:
        return SmsFailureKind.PERMANENT
    if code in UNREACHABLE_CODES:
        return SmsFailureKind.UNREACHABLE
    if code in FILTERED_CODES:
        return SmsFailureKind.FILTERED
    return SmsFailureKind.OTHER


def sms_address(number: str) -> str:
    """The number an SMS goes to: E.164, any extension dropped.

    A number written with an extension ("(415) 555-0142 x22",
    "+1 415 555 0142;ext=22") reaches the phone by its E.164 part; an
    extension means nothing to SMS. A number that does not parse is kept as
    written, for Twilio to refuse (21211) and the fallback to take over.
    """
    text = (number or "").strip()
    try:
        parsed = phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException:
        return text
    if not phonenumbers.is_valid_number(parsed):
        return text
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


# Statuses that mean our own configuration is wrong (credentials, account
# SID), not the message: kept retryable so fixing the setting lets the owed
# messages go out instead of writing them all off.
CONFIGURATION_STATUSES = frozenset({401, 403, 404})
# The re-send look-up reads at most this many of the newest messages to one
# number, in pages: two requests, so a claim's lease (notifications.delivery)
# covers the look-up and the send even when Twilio is slow.
LOOKUP_PAGE_SIZE = 100
LOOKUP_LIMIT = 200
# Final message statuses that mean the message did not reach the phone.
NOT_DELIVERED = frozenset({"failed", "undelivered", "canceled"})


@dataclass(frozen=True)
class SmsResult:
    """What became of one send: Twilio's message SID, or only a log line."""

    message_id: str
    logged: bool = False


class StandInHttpClient(TwilioHttpClient):
    """The official HTTP client, pointed at a stand-in instead of Twilio.

    Used when `TWILIO_API_BASE_URL` is set (tests, benchmarks). A URL that
    is not on api.twilio.com (an edge or region from the environment) is
    refused rather than let through to a real host.
    """

    def __init__(self, *, base_url: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")

    def request(self, method, url, *args, **kwargs):
        if not url.startswith(TWILIO_API_ORIGIN + "/"):
            raise ImproperlyConfigured(
                f"TWILIO_API_BASE_URL is set but the client asked for {url!r}; "
                "unset TWILIO_EDGE/TWILIO_REGION when using a stand-in"
            )
        url = self.base_url + url[len(TWILIO_API_ORIGIN) :]
        return super().request(method, url, *args, **kwargs)


@functools.lru_cache(maxsize=4)
def _client(account_sid: str, auth_token: str, api_base_url: str) -> Client:
    """One client (and its connection pool) per configuration."""
    if api_base_url:
        http_client = StandInHttpClient(
            base_url=api_base_url,
            timeout=REQUEST_TIMEOUT_SECONDS,
            logger=http_logger,
        )
    else:
        http_client = TwilioHttpClient(
            timeout=REQUEST_TIMEOUT_SECONDS, logger=http_logger
        )
    return Client(account_sid, auth_token, http_client=http_client)


def sms_configured() -> bool:
    return bool(settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN)


def sms_status_callback_url() -> str:
    """Where Twilio reports delivery; empty when we have no public address."""
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return f"{base}{SMS_STATUS_CALLBACK_PATH}" if base else ""


def sms_send(
    *, to: str, body: str, from_number: str, notification_id: int | None = None
) -> SmsResult:
    """Hand one SMS to Twilio; raise our own error if it is not taken.

    Without credentials or a sender number, log (masked) instead of sending
    so a bare machine runs the whole product.
    """
    if not (sms_configured() and from_number):
        logger.info(
            "sms: no Twilio credentials or sender, logged instead of sent "
            "notification=%s to=%s chars=%d",
            notification_id,
            mask_phone(to),
            len(body),
        )
        return SmsResult(message_id="", logged=True)

    client = _client(
        settings.TWILIO_ACCOUNT_SID,
        settings.TWILIO_AUTH_TOKEN,
        settings.TWILIO_API_BASE_URL,
    )
    try:
        message = client.messages.create(
            to=sms_address(to),
            from_=from_number,
            body=body,
            status_callback=sms_status_callback_url() or values.unset,
        )
    except (TwilioRestException, TwilioServiceException) as exc:
        raise _provider_error(exc) from exc
    except requests.Timeout as exc:
        # Twilio may have taken the message it did not answer for; the
        # retry looks for it before sending again (notifications.delivery).
        raise TransientProviderError(
            "Twilio did not answer in time", code=TIMEOUT
        ) from exc
    except requests.ConnectionError as exc:
        raise TransientProviderError(
            "could not connect to Twilio", code="connection"
        ) from exc
    return SmsResult(message_id=message.sid)


def sms_find_sent(
    *,
    to: str,
    body: str,
    from_number: str,
    since: datetime,
    exclude: frozenset[str] = frozenset(),
) -> str | None:
    """The SID of a message Twilio already took with this body, if any.

    Asked before sending again a message whose worker was lost mid-send:
    Twilio has no idempotency key, so we look at the latest messages to the
    same number from the same sender, page after page (up to LOOKUP_LIMIT):
    a busy on-call number may have been sent dozens since. Messages in
    `exclude` (one Twilio already reported undelivered) and messages Twilio
    reports failed do not count. Raises TransientProviderError when Twilio
    cannot be asked.
    """
    if not (sms_configured() and from_number):
        return None
    client = _client(
        settings.TWILIO_ACCOUNT_SID,
        settings.TWILIO_AUTH_TOKEN,
        settings.TWILIO_API_BASE_URL,
    )
    try:
        messages = client.messages.stream(
            to=sms_address(to),
            from_=from_number,
            limit=LOOKUP_LIMIT,
            page_size=LOOKUP_PAGE_SIZE,
        )
        for message in messages:
            if message.sid in exclude or message.status in NOT_DELIVERED:
                continue
            if message.body == body and (
                message.date_created is None or message.date_created >= since
            ):
                return message.sid
    except (TwilioRestException, TwilioServiceException) as exc:
        raise _provider_error(exc) from exc
    except TwilioException as exc:
        raise TransientProviderError(str(exc), code="lookup") from exc
    except requests.RequestException as exc:
        raise TransientProviderError(
            "could not look up messages at Twilio", code="connection"
        ) from exc
    return None


def _provider_error(exc: TwilioRestException | TwilioServiceException) -> ProviderError:
    status = int(exc.status or 0)
    code = str(exc.code or status)
    if isinstance(exc, TwilioServiceException):
        text = exc.detail or exc.title
    else:
        text = exc.msg
    text = f"Twilio {status} {code}: {text}"
    if status == 429 or status >= 500:
        return TransientProviderError(text, code=code)
    if code in PERMANENT_CODES:
        return PermanentProviderError(text, code=code)
    if status in CONFIGURATION_STATUSES:
        return TransientProviderError(text, code=code)
    return PermanentProviderError(text, code=code)
