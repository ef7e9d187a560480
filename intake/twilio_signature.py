"""Whether a webhook really comes from Twilio (X-Twilio-Signature).

Twilio signs the URL it was configured with, plus the POST parameters, with
the account auth token. Behind our TLS proxy the request reaches us as plain
http, perhaps on an internal host, so the signed URL is rebuilt: from
PUBLIC_BASE_URL when it is set; otherwise from the request, believing
X-Forwarded-Proto/Host only when the peer is one of our own proxies
(TRUSTED_PROXY_IPS). Django's SECURE_PROXY_SSL_HEADER and
USE_X_FORWARDED_HOST are deliberately not used here: they would believe
those headers from anyone.

Used by every Twilio webhook (voice status now, SMS status later).
"""

import logging

from django.conf import settings
from django.http import HttpRequest
from twilio.request_validator import RequestValidator

from afterhours.proxies import trusted_proxy

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "HTTP_X_TWILIO_SIGNATURE"


def twilio_public_url(request: HttpRequest) -> str:
    """The URL Twilio posted to, as Twilio saw it (and signed it)."""
    path = request.get_full_path()
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    if base:
        # Limitation: a PUBLIC_BASE_URL with a path of its own that the proxy
        # strips before us is not supported; the base is scheme and host.
        return f"{base}{path}"

    scheme = request.META.get("wsgi.url_scheme", "http")
    host = request.META.get("HTTP_HOST") or _server_host(request)
    if _from_trusted_proxy(request):
        # A proxy that appends to these headers puts its own value last.
        forwarded_proto = _last(request.META.get("HTTP_X_FORWARDED_PROTO", ""))
        forwarded_host = _last(request.META.get("HTTP_X_FORWARDED_HOST", ""))
        scheme = forwarded_proto.lower() or scheme
        host = forwarded_host or host
    return f"{scheme}://{host}{path}"


def twilio_request_valid(request: HttpRequest) -> bool:
    """True only for a request signed with our auth token for its own URL.

    No auth token configured refuses every request: an unconfigured
    webhook must not become an open one.
    """
    token = settings.TWILIO_AUTH_TOKEN
    if not token:
        logger.error(
            "twilio webhook: TWILIO_AUTH_TOKEN is not set, refusing %s",
            request.path,
        )
        return False
    signature = request.META.get(SIGNATURE_HEADER, "")
    if not signature:
        logger.warning(
            "twilio webhook: no signature on %s from %s",
            request.path,
            request.META.get("REMOTE_ADDR"),
        )
        return False

    url = twilio_public_url(request)
    # Twilio signs JSON bodies by a hash in the URL (bodySHA256) and form
    # bodies by their parameters; the validator takes the raw body for the
    # first and the parsed, multi-valued parameters for the second.
    # Limitation: only the account auth token (HMAC-SHA1) is checked; webhooks
    # signed with a SharedKey (X-Twilio-Webhooks-Signature-Settings) are
    # refused until we configure such a key.
    if "bodySHA256" in request.GET:
        params = request.body.decode("utf-8", errors="replace")
    else:
        params = request.POST
    if RequestValidator(token).validate(url, params, signature):
        return True
    logger.warning(
        "twilio webhook: bad signature on %s from %s (signed URL taken as %s)",
        request.path,
        request.META.get("REMOTE_ADDR"),
        url,
    )
    return False


def _from_trusted_proxy(request: HttpRequest) -> bool:
    return trusted_proxy(request.META.get("REMOTE_ADDR", ""))


def _last(header: str) -> str:
    return header.rsplit(",", 1)[-1].strip()


def _server_host(request: HttpRequest) -> str:
    name = request.META.get("SERVER_NAME", "")
    port = str(request.META.get("SERVER_PORT", ""))
    return f"{name}:{port}" if port and port not in ("80", "443") else name
