"""Request rate limits shared by every worker, kept in Redis.

A sliding window per key (for Airtable: per base): at most `limit` requests
start in any `period` seconds, counted across all processes and machines
that share the broker's Redis. A key can also be blocked outright for a
while, which is how a provider's "wait 30 seconds" reaches every worker.

Without Redis (the local mode on SQLite and a filesystem broker) the same
limits are kept in this process only, which is all one local worker needs.
"""

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from functools import cache
from typing import Protocol

logger = logging.getLogger(__name__)


class RateLimitBlocked(Exception):
    """The key is blocked (the provider asked us to wait); nothing was sent."""

    def __init__(self, key: str, retry_after: float):
        super().__init__(f"{key} blocked for {retry_after:.1f}s")
        self.key = key
        self.retry_after = retry_after


class RateLimitBusy(Exception):
    """No slot came free within the wait the caller allowed."""

    def __init__(self, key: str, retry_after: float):
        super().__init__(f"{key} busy, next slot in {retry_after:.2f}s")
        self.key = key
        self.retry_after = retry_after


class RateLimiter(Protocol):
    limit: int
    period: float

    def try_acquire(self, key: str) -> float:
        """Take a slot: 0.0 when taken, else the seconds until one frees.

        Raises RateLimitBlocked while the key is blocked.
        """

    def block(self, key: str, *, seconds: float) -> None:
        """Refuse every slot for `key` for the next `seconds` (<= 0 lifts it)."""

    def blocked_for(self, key: str) -> float:
        """Seconds the key stays blocked; 0.0 when it is not."""

    def next_slot_in(self, key: str) -> float:
        """Seconds until `try_acquire` would take a slot; 0.0 if it would now.

        Takes no slot. A block counts when it lasts longer than the window.
        """

    def clear(self, key: str) -> None:
        """Forget the slots taken on `key`; a block stays."""


def rate_limit_acquire(
    limiter: RateLimiter,
    *,
    key: str,
    max_wait: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait for a slot on `key`, at most `max_wait` seconds.

    Raises RateLimitBlocked (the key is blocked) or RateLimitBusy (no slot
    within `max_wait`), so a task never sleeps long: its caller records a
    due time instead.
    """
    deadline = time.monotonic() + max_wait
    while True:
        wait = limiter.try_acquire(key)
        if wait <= 0:
            return
        if time.monotonic() + wait > deadline:
            raise RateLimitBusy(key, wait)
        sleep(wait)


# KEYS[1]: the window (sorted set of start times in ms); KEYS[2]: the block.
# ARGV: limit, period in ms, a member unique to this request.
# Returns {1, 0} for a slot, {0, ms to wait} when full, {-1, ms} when blocked.
# The clock is Redis's own, so workers on machines with skewed clocks agree.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = redis.call('PTTL', KEYS[2])
if blocked > 0 then return {-1, blocked} end
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], period)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, math.max(1, tonumber(oldest[2]) + period - now + 1)}
"""


# The same reading as _ACQUIRE_LUA, taking nothing. Returns ms to wait.
_NEXT_SLOT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = math.max(0, redis.call('PTTL', KEYS[2]))
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
if redis.call('ZCARD', KEYS[1]) < limit then return blocked end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(blocked, tonumber(oldest[2]) + period - now + 1)
"""


class RedisRateLimiter:
    """Sliding-window limiter whose state lives in Redis, shared by workers."""

    def __init__(self, client, *, name: str, limit: int, period: float, prefix=""):
        self.client = client
        self.limit = limit
        self.period = period
        self._prefix = f"{prefix}ratelimit:{name}:"
        self._acquire = client.register_script(_ACQUIRE_LUA)
        self._next_slot = client.register_script(_NEXT_SLOT_LUA)

    def _keys(self, key: str) -> tuple[str, str]:
        return f"{self._prefix}{key}:window", f"{self._prefix}{key}:blocked"

    def try_acquire(self, key: str) -> float:
        granted, ms = self._acquire(
            keys=list(self._keys(key)),
            args=[self.limit, int(self.period * 1000), uuid.uuid4().hex],
        )
        if granted == -1:
            raise RateLimitBlocked(key, ms / 1000)
        return 0.0 if granted == 1 else ms / 1000

    def block(self, key: str, *, seconds: float) -> None:
        # A later refusal restarts the wait, as the provider's own clock does.
        if seconds <= 0:
            self.client.delete(self._keys(key)[1])
        else:
            self.client.set(self._keys(key)[1], "1", px=max(1, int(seconds * 1000)))

    def blocked_for(self, key: str) -> float:
        ms = self.client.pttl(self._keys(key)[1])
        return ms / 1000 if ms > 0 else 0.0

    def next_slot_in(self, key: str) -> float:
        ms = self._next_slot(
            keys=list(self._keys(key)), args=[self.limit, int(self.period * 1000)]
        )
        return ms / 1000

    def clear(self, key: str) -> None:
        self.client.delete(self._keys(key)[0])


class LocalRateLimiter:
    """The same limits within one process, for the local mode without Redis.

    # Limitation: several local worker processes each keep their own window,
    # so together they can exceed the limit; local mode runs one worker.
    """

    def __init__(self, *, name: str, limit: int, period: float, clock=time.monotonic):
        self.name = name
        self.limit = limit
        self.period = period
        self._clock = clock
        self._lock = threading.Lock()
        self._starts: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def try_acquire(self, key: str) -> float:
        with self._lock:
            now = self._clock()
            blocked = self._blocked_until.get(key, 0.0) - now
            if blocked > 0:
                raise RateLimitBlocked(key, blocked)
            starts = self._starts.setdefault(key, deque())
            while starts and starts[0] <= now - self.period:
                starts.popleft()
            if len(starts) < self.limit:
                starts.append(now)
                return 0.0
            return starts[0] + self.period - now

    def block(self, key: str, *, seconds: float) -> None:
        with self._lock:
            self._blocked_until[key] = self._clock() + seconds

    def blocked_for(self, key: str) -> float:
        with self._lock:
            return max(0.0, self._blocked_until.get(key, 0.0) - self._clock())

    def next_slot_in(self, key: str) -> float:
        with self._lock:
            now = self._clock()
            blocked = max(0.0, self._blocked_until.get(key, 0.0) - now)
            starts = self._starts.get(key, deque())
            while starts and starts[0] <= now - self.period:
                starts.popleft()
            if len(starts) < self.limit:
                return blocked
            return max(blocked, starts[0] + self.period - now)

    def clear(self, key: str) -> None:
        with self._lock:
            self._starts.pop(key, None)


@cache
def _redis_client(url: str):
    import redis

    return redis.Redis.from_url(url)


@cache
def _local_limiter(name: str, limit: int, period: float) -> LocalRateLimiter:
    return LocalRateLimiter(name=name, limit=limit, period=period)


def rate_limiter_for(*, name: str, limit: int, period: float) -> RateLimiter:
    """The limiter named `name`: on the broker's Redis when there is one.

    Keys carry the broker's key prefix, so parallel test runs that share a
    Redis server never share a window.
    """
    from django.conf import settings

    url = settings.CELERY_BROKER_URL or ""
    if url.startswith(("redis://", "rediss://")):
        prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
        return RedisRateLimiter(
            _redis_client(url), name=name, limit=limit, period=period, prefix=prefix
        )
    return _local_limiter(name, limit, period)
