"""Looking at a limiter's window without taking a slot, and forgetting one.

Sign-in throttling (accounts.sign_in_throttle) asks "may this attempt go
ahead?" before it knows whether the attempt fails, and counts only failures:
so it needs to look without taking, and to forget an account's window after
a good sign-in. Both limiters answer alike.
"""

import uuid

import pytest

from intake.ratelimit import LocalRateLimiter, rate_limiter_for


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(params=["local", "redis"])
def limiter_and_clock(request, settings):
    """A limiter of each kind, limit 3 in 60 s, and a way to move time.

    Redis keeps its own clock, so the Redis limiter's time only moves for
    real; its tests take no more than the first window.
    """
    if request.param == "local":
        clock = Clock()
        return LocalRateLimiter(name="peek", limit=3, period=60, clock=clock), clock
    limiter = rate_limiter_for(name=f"peek-{uuid.uuid4().hex}", limit=3, period=60)
    return limiter, None


def test_next_slot_in_is_zero_while_slots_are_free_and_takes_none(limiter_and_clock):
    limiter, _ = limiter_and_clock
    for _ in range(5):
        assert limiter.next_slot_in("dana") == 0.0
    assert [limiter.try_acquire("dana") for _ in range(3)] == [0.0] * 3


def test_next_slot_in_says_when_the_oldest_slot_frees(limiter_and_clock):
    limiter, clock = limiter_and_clock
    for _ in range(3):
        limiter.try_acquire("dana")

    wait = limiter.next_slot_in("dana")

    assert 59 < wait <= 60.01
    assert limiter.next_slot_in("sam") == 0.0, "each key has its own window"
    if clock is not None:
        clock.now += 60.5
        assert limiter.next_slot_in("dana") == 0.0


def test_next_slot_in_counts_a_block_longer_than_the_window(limiter_and_clock):
    limiter, _ = limiter_and_clock
    limiter.block("dana", seconds=300)

    assert 299 < limiter.next_slot_in("dana") <= 300


def test_clear_forgets_the_window_but_not_a_block(limiter_and_clock):
    limiter, _ = limiter_and_clock
    for _ in range(3):
        limiter.try_acquire("dana")
    limiter.try_acquire("sam")

    limiter.clear("dana")

    assert limiter.next_slot_in("dana") == 0.0
    assert [limiter.try_acquire("dana") for _ in range(3)] == [0.0] * 3
    assert limiter.try_acquire("dana") > 0
    assert [limiter.try_acquire("sam") for _ in range(2)] == [0.0] * 2
    assert limiter.try_acquire("sam") > 0, "another key's window is left alone"

    limiter.block("dana", seconds=300)
    limiter.clear("dana")
    assert limiter.blocked_for("dana") > 299
