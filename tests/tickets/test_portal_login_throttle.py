"""Password guessing on the portal and admin sign-in is slowed to a crawl.

Failed sign-ins are counted in Redis (shared by every web worker) per login
name and per client address: after 5 failures in 15 minutes for a name, or
20 from an address, sign-in answers 429 with when to try again, the same
words whether the login exists or not, until the oldest failure is older
than the window.
"""

import logging
import re
import socket
import uuid

import pytest
import redis
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from tests.factories import PortalUserFactory, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = reverse("login")
ADMIN_LOGIN = reverse("admin:login")
PAUSED = "Too many unsuccessful sign-in attempts"
# The value typed back into the form, and the CSRF token.
FORM_VALUE_RE = re.compile(
    r'(name="(?:username|csrfmiddlewaretoken)"[^>]*?value=)"[^"]*"'
)


@pytest.fixture(autouse=True)
def _fresh_sign_in_counters(settings):
    """Every test starts with no failures counted (tests share 127.0.0.1)."""

    # Read now: a test may point the broker somewhere else.
    store = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]

    def forget():
        keys = list(store.scan_iter(match=f"{prefix}ratelimit:sign-in-*"))
        if keys:
            store.delete(*keys)

    forget()
    yield
    forget()


def portal_login(username: str = "", *, password: str = "pw"):
    user = UserFactory(**({"username": username} if username else {}))
    user.set_password(password)
    user.save()
    PortalUserFactory(user=user)
    return user


def sign_in(client, username, password, *, url=LOGIN, **extra):
    return client.post(url, {"username": username, "password": password}, **extra)


def fail(client, username, times=1, **extra):
    for n in range(times):
        response = sign_in(client, username, f"wrong-{n}", **extra)
        assert response.status_code == 200, (username, n)
        assert "correct username and password" in response.content.decode()


def without_form_values(response) -> str:
    """The page less what differs between any two requests: the name typed
    back into the form and the CSRF token."""
    page = response.content.decode()
    return FORM_VALUE_RE.sub(r"\1", page)


def signed_in(client) -> bool:
    return SESSION_KEY in client.session


def test_the_sixth_failure_for_a_login_name_gets_429_saying_when_to_retry(client):
    dana = portal_login("dana")
    fail(client, dana.username, times=5)

    response = sign_in(client, dana.username, "wrong-again")

    assert response.status_code == 429
    page = response.content.decode()
    assert PAUSED in page
    assert "try again in about 15 minutes" in page
    assert 14 * 60 < int(response["Retry-After"]) <= 15 * 60 + 1
    assert not signed_in(client)


def test_the_right_password_is_refused_too_while_paused(client):
    dana = portal_login("dana", password="correct horse")
    fail(client, dana.username, times=5)

    response = sign_in(client, dana.username, "correct horse")

    assert response.status_code == 429
    assert not signed_in(client)


def test_the_login_name_is_matched_whatever_its_case_and_spaces(client):
    dana = portal_login("dana")
    fail(client, "dana", times=3)
    fail(client, "DANA", times=2)

    assert sign_in(client, " Dana ", "pw").status_code == 429
    assert sign_in(client, dana.username, "pw").status_code == 429


def test_the_same_answer_whether_the_login_exists_or_not(client):
    portal_login("dana")
    fail(client, "dana", times=5)
    fail(client, "nobody-by-this-name", times=5)

    real = sign_in(client, "dana", "x")
    made_up = sign_in(client, "nobody-by-this-name", "x")

    assert real.status_code == made_up.status_code == 429
    assert real["Retry-After"] == made_up["Retry-After"]
    assert without_form_values(real) == without_form_values(made_up)


def test_another_login_from_the_same_address_works_until_the_address_limit(client):
    """20 failures from one address pause every sign-in from it."""
    dana = portal_login("dana")
    sam = portal_login("sam")
    fail(client, dana.username, times=5)
    assert sign_in(client, dana.username, "pw").status_code == 429

    assert sign_in(client, sam.username, "pw").status_code == 302
    assert signed_in(client)
    client.logout()

    for name in ("guess-1", "guess-2", "guess-3"):
        fail(client, name, times=5)  # failures 6 to 20 from this address
    assert sign_in(client, sam.username, "pw").status_code == 429
    assert sign_in(client, "never-tried", "x").status_code == 429

    elsewhere = sign_in(client, sam.username, "pw", REMOTE_ADDR="203.0.113.9")
    assert elsewhere.status_code == 302, "another address is not paused"


def test_a_good_sign_in_does_not_reset_the_address_count_of_other_logins(client):
    sam = portal_login("sam")
    for name in ("guess-1", "guess-2", "guess-3"):
        fail(client, name, times=5)
    fail(client, "guess-4", times=4)  # 19 failures from this address

    assert sign_in(client, sam.username, "pw").status_code == 302
    client.logout()

    fail(client, "guess-5")  # the 20th still gets the ordinary answer
    assert sign_in(client, sam.username, "pw").status_code == 429


def test_a_good_sign_in_forgets_that_login_name_own_failures(client):
    dana = portal_login("dana")
    fail(client, dana.username, times=4)
    assert sign_in(client, dana.username, "pw").status_code == 302
    client.logout()

    fail(client, dana.username, times=4)
    assert sign_in(client, dana.username, "pw").status_code == 302


def test_failures_are_counted_across_clients_in_redis(settings):
    """Two test clients share nothing but Redis, as two web workers do."""
    dana = portal_login("dana")
    first, second = Client(), Client()
    fail(first, dana.username, times=3)
    fail(second, dana.username, times=2)

    assert sign_in(first, dana.username, "pw").status_code == 429
    assert sign_in(second, dana.username, "pw").status_code == 429
    store = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    windows = list(store.scan_iter(match=f"{prefix}ratelimit:sign-in-*:window"))
    assert sorted(store.zcard(key) for key in windows) == [5, 5]
    assert not any(b"dana" in key for key in windows), "no login name in a key"


def test_a_pause_is_logged_with_the_login_masked_and_no_password(client, caplog):
    dana = portal_login("dana@harborplumbing.example")
    fail(client, dana.username, times=5)
    caplog.set_level(logging.INFO, logger="accounts")

    sign_in(client, dana.username, "Secret-Guess-6")

    paused = [r for r in caplog.records if "paused" in r.getMessage()]
    assert paused, caplog.text
    assert "d***@harborplumbing.example" in paused[0].getMessage()
    assert "127.0.0.1" in paused[0].getMessage()
    assert paused[0].levelno == logging.WARNING
    assert "dana@harborplumbing.example" not in caplog.text
    assert "Secret-Guess" not in caplog.text


def test_sign_in_query_counts_are_unchanged(client, django_assert_num_queries):
    """Counting lives in Redis: a failure costs the one user lookup it did
    before, a paused attempt none at all."""
    dana = portal_login("dana")
    with django_assert_num_queries(1):
        fail(client, dana.username)
    fail(client, dana.username, times=4)

    with django_assert_num_queries(0):
        assert sign_in(client, dana.username, "pw").status_code == 429


def test_behind_a_trusted_proxy_each_forwarded_client_is_counted(client, settings):
    settings.TRUSTED_PROXY_IPS = ["10.0.0.0/24"]
    portal_login("sam")
    proxy = {"REMOTE_ADDR": "10.0.0.5"}
    for n in range(4):
        fail(client, f"guess-{n}", 5, HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy)

    paused = sign_in(client, "sam", "pw", HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy)
    other = sign_in(client, "sam", "pw", HTTP_X_FORWARDED_FOR="198.51.100.9", **proxy)

    assert paused.status_code == 429
    assert other.status_code == 302


def test_a_forwarded_header_from_anyone_else_is_not_believed(client, settings):
    """A guesser cannot escape the address count by inventing addresses."""
    settings.TRUSTED_PROXY_IPS = ["10.0.0.0/24"]
    portal_login("sam")
    for n in range(20):
        fail(client, f"guess-{n}", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")

    response = sign_in(client, "sam", "pw", HTTP_X_FORWARDED_FOR="192.0.2.77")

    assert response.status_code == 429


def test_a_spoofed_hop_before_our_proxy_does_not_hide_the_client(client, settings):
    """Our proxy appends the peer it saw; what the client wrote comes first."""
    settings.TRUSTED_PROXY_IPS = ["10.0.0.5"]
    portal_login("sam")
    proxy = {"REMOTE_ADDR": "10.0.0.5"}
    for n in range(20):
        forwarded = f"192.0.2.{n}, 198.51.100.7"
        fail(client, f"guess-{n}", HTTP_X_FORWARDED_FOR=forwarded, **proxy)

    client_hop = {"HTTP_X_FORWARDED_FOR": "198.51.100.7"}
    response = sign_in(client, "sam", "pw", **client_hop, **proxy)

    assert response.status_code == 429


def test_ipv6_clients_are_counted_by_their_64_network(client):
    """One machine holds a whole /64; it must not get 20 guesses an address."""
    portal_login("sam")
    for n in range(20):
        fail(client, f"guess-{n}", REMOTE_ADDR=f"2001:db8:1:2::{n + 1:x}")

    same_net = sign_in(client, "sam", "pw", REMOTE_ADDR="2001:db8:1:2::ffff")
    other_net = sign_in(client, "sam", "pw", REMOTE_ADDR="2001:db8:1:3::1")

    assert same_net.status_code == 429
    assert other_net.status_code == 302


def test_limits_come_from_settings(client, settings):
    settings.LOGIN_FAILURES_PER_ACCOUNT = 2
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 120
    portal_login("dana")
    fail(client, "dana", times=2)

    response = sign_in(client, "dana", "pw")

    assert response.status_code == 429
    assert "try again in about 2 minutes" in response.content.decode()


def test_sign_in_still_works_when_redis_is_unreachable(client, settings, caplog):
    """Failing closed would lock every customer and operator out."""
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"
    dana = portal_login(f"dana-{uuid.uuid4().hex[:6]}")

    response = sign_in(client, dana.username, "pw")

    assert response.status_code == 302
    assert "sign-in throttling unavailable" in caplog.text


def test_admin_sign_in_is_paused_the_same_way(client):
    staff = UserFactory(username="operator", is_staff=True, is_superuser=True)
    fail(client, staff.username, times=5, url=ADMIN_LOGIN)

    response = sign_in(client, staff.username, "pw", url=ADMIN_LOGIN)

    assert response.status_code == 429
    assert PAUSED in response.content.decode()
    assert not signed_in(client)


def test_admin_and_portal_failures_add_up(client):
    staff = UserFactory(username="operator", is_staff=True, is_superuser=True)
    fail(client, staff.username, times=3, url=ADMIN_LOGIN)
    fail(client, staff.username, times=2)

    assert sign_in(client, staff.username, "pw", url=ADMIN_LOGIN).status_code == 429


def test_admin_sign_in_of_a_non_staff_login_with_its_password_is_no_failure(client):
    """The admin refuses it, but the password was right: nothing to count."""
    dana = portal_login("dana")
    for _ in range(6):
        response = sign_in(client, dana.username, "pw", url=ADMIN_LOGIN)
        assert response.status_code == 200

    assert sign_in(client, dana.username, "pw").status_code == 302


def test_a_login_that_is_not_an_address_is_still_told_apart_in_the_log():
    from accounts.sign_in_throttle import sign_in_attempt

    dana = sign_in_attempt(request=None, username="dana.h")
    other = sign_in_attempt(request=None, username="dmitri")

    assert dana.login_masked.startswith("d*** #")
    assert "dana" not in dana.login_masked
    assert dana.login_masked != other.login_masked
    assert sign_in_attempt(request=None, username=" Dana.H ").login_masked == (
        dana.login_masked
    )
