"""Failed sign-ins counted per login name and per client address.

Password guessing against the portal or the admin is slowed to a crawl:
after LOGIN_FAILURES_PER_ACCOUNT failures for one login name, or
LOGIN_FAILURES_PER_CLIENT_IP from one client address, within
LOGIN_FAILURE_WINDOW_SECONDS, every sign-in for that name or from that
address is refused (even with the right password) until the oldest failure
leaves the window. The refusal reads the same whether the login exists or
not, and names no limit, so it tells a guesser nothing about accounts.

Failures are counted in the shared limiter (intake.ratelimit), on the
broker's Redis, so every web worker sees the same counts. Login names are
keyed by a keyed hash, never stored as written. A good sign-in forgets its
own login name's failures, never the address's: a guesser's own account
must not wash out the failures it made on others.

The client address is REMOTE_ADDR; X-Forwarded-For is read only when the
peer is one of our own proxies (TRUSTED_PROXY_IPS, as for Twilio's
signature in intake.twilio_signature), from the right, up to the first
address that is not ours. IPv6 clients are counted by their /64, which one
machine usually holds whole.

# Limitation: the check comes before the password is tried and the failure
# is counted after, so attempts in flight at the same moment (as many as
# there are web workers) can each pass before any of them is counted.
# Limitation: anyone who knows a login name can keep its sign-in paused by
# failing it; support can lift a pause by deleting its Redis key
# (ratelimit:sign-in-*), and the person can still be signed in by support.
"""

import ipaddress
import logging
import math
from dataclasses import dataclass

import redis
from django.conf import settings
from django.http import HttpRequest
from django.utils.crypto import salted_hmac

from afterhours.privacy import mask_email
from afterhours.proxies import trusted_proxy
from intake.ratelimit import RateLimiter, rate_limiter_for

logger = logging.getLogger(__name__)

_HASH_SALT = "accounts.sign_in_throttle.login-name"


@dataclass(frozen=True)
class SignInAttempt:
    """Who is trying, as the counters know them."""

    login_key: str
    login_masked: str
    client_address: str


def sign_in_attempt(*, request: HttpRequest | None, username: str) -> SignInAttempt:
    name = username.strip().casefold()
    key = salted_hmac(_HASH_SALT, name).hexdigest()[:32]
    # A login that is not an address still gets a first letter, and the
    # key's start lets an operator tie one login's attempts together.
    shown = mask_email(name) if "@" in name else f"{name[:1]}***"
    return SignInAttempt(
        login_key=key,
        login_masked=f"{shown} #{key[:8]}",
        client_address=client_address(request) if request is not None else "unknown",
    )


def sign_in_wait(attempt: SignInAttempt) -> float:
    """Seconds until this login name may try from this address; 0.0 now.

    Logs a refusal. Without Redis the attempt goes ahead (logged): a paused
    throttle must not lock every customer and operator out.
    """
    try:
        login_wait = _login_limiter().next_slot_in(attempt.login_key)
        address_wait = _address_limiter().next_slot_in(attempt.client_address)
    except redis.RedisError as error:
        _unavailable(error)
        return 0.0

    wait = max(login_wait, address_wait)
    if wait > 0:
        logger.warning(
            "sign-in paused: login %s from %s (by %s), %d s to go",
            attempt.login_masked,
            attempt.client_address,
            "login name" if login_wait >= address_wait else "address",
            math.ceil(wait),
        )
    return wait


def sign_in_failed(attempt: SignInAttempt) -> None:
    """Count a wrong password (or unknown login) against both counters."""
    logger.info(
        "sign-in failed: login %s from %s", attempt.login_masked, attempt.client_address
    )
    try:
        # A full window cannot be met here (the check came first) but for
        # attempts in flight together; their extra failures are not counted.
        _login_limiter().try_acquire(attempt.login_key)
        _address_limiter().try_acquire(attempt.client_address)
    except redis.RedisError as error:
        _unavailable(error)


def sign_in_succeeded(attempt: SignInAttempt) -> None:
    """Forget this login name's failures; the address keeps its count."""
    try:
        _login_limiter().clear(attempt.login_key)
    except redis.RedisError as error:
        _unavailable(error)


def sign_in_paused_message(wait: float) -> str:
    minutes = max(1, round(wait / 60))
    when = "about a minute" if minutes == 1 else f"about {minutes} minutes"
    return (
        "Too many unsuccessful sign-in attempts. To keep accounts safe, sign-in "
        f"is paused for now: please try again in {when}. If you need in sooner, "
        f"write to {settings.SUPPORT_EMAIL}."
    )


def client_address(request: HttpRequest) -> str:
    """The address sign-in failures are counted against (an IPv6 /64)."""
    peer_text = request.META.get("REMOTE_ADDR", "")
    address = _parsed(peer_text)
    if address is None:
        return peer_text or "unknown"
    if trusted_proxy(address):
        # Each of our proxies appends the peer it saw: read from the right
        # up to the first hop that is not ours; anything left of it was
        # written by the client and proves nothing.
        hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        for hop in reversed(hops):
            forwarded = _parsed(hop.strip())
            if forwarded is None:
                break
            address = forwarded
            if not trusted_proxy(forwarded):
                break
    return _counted_as(address)


def _login_limiter() -> RateLimiter:
    return rate_limiter_for(
        name="sign-in-login",
        limit=settings.LOGIN_FAILURES_PER_ACCOUNT,
        period=settings.LOGIN_FAILURE_WINDOW_SECONDS,
    )


def _address_limiter() -> RateLimiter:
    return rate_limiter_for(
        name="sign-in-address",
        limit=settings.LOGIN_FAILURES_PER_CLIENT_IP,
        period=settings.LOGIN_FAILURE_WINDOW_SECONDS,
    )


def _unavailable(error: Exception) -> None:
    logger.error("sign-in throttling unavailable, attempt let through: %s", error)


def _parsed(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _counted_as(address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
