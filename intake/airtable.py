"""Mirror each call to its business's Airtable "Calls" table.

One record per call, upserted on the "Call ID" field, so a retry (after a
timeout, a 5xx, a killed worker) updates the record instead of adding a
second one. Retry state lives on the Call row (airtable_state, attempts,
next attempt, last error) and the beat sweep picks up what is due, so a
restart loses nothing and no task sleeps through Airtable's 30-second wait.

Airtable allows 5 requests a second per base; every worker takes a slot
from one shared limiter (intake.ratelimit) before each request.
"""

import logging
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from pyairtable import Api

from .models import Call
from .ratelimit import (
    RateLimitBlocked,
    RateLimitBusy,
    RateLimiter,
    rate_limit_acquire,
    rate_limiter_for,
)

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://api.airtable.com"
FIELD_CALL_ID = "Call ID"
ERROR_NO_BASE = "no Airtable base configured"
# Airtable takes at most 10 records in one create or update request.
BATCH_SIZE = 10
# Airtable counts 5 requests a second where they arrive; we count where they
# leave, and one request can lag another by tens of milliseconds on the way,
# so our window is a little wider than a second.
RATE_WINDOW_SECONDS = 1.2
# The longest a push waits for a free slot before it records a due time and
# lets the sweep carry on.
MAX_SLOT_WAIT_SECONDS = 3.0
# A push in flight holds its calls this long; if its worker dies, the sweep
# finds the calls due again once the lease runs out.
LEASE_SECONDS = 120
RETRY_BASE_SECONDS = 15
RETRY_CAP_SECONDS = 3600
SWEEP_LIMIT = 200
# A new call's own sync task normally pushes it; the sweep steps in only when
# that push never happened (a lost message) and the call is this old.
NEW_CALL_GRACE_SECONDS = 60


def call_airtable_fields(call: Call) -> dict[str, Any]:
    """The Airtable record of a call: field name -> value."""

    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        FIELD_CALL_ID: call.provider_call_id,
        "Caller": call.caller_number,
        "Dialled": call.dialled_number,
        "Status": call.status,
        "Started": iso(call.started_at),
        "Ended": iso(call.ended_at),
        "Duration": call.duration_seconds,
        "Summary": call.summary,
        "Urgency": call.urgency,
    }


def call_airtable_push(*, call_id: int) -> None:
    """Upsert one call's Airtable record now; record the outcome on the call.

    Call outside any transaction (it talks to Airtable). Safe to repeat:
    the record is keyed on the call id. A failure is recorded with a due
    time for the sweep, never raised.
    """
    calls_airtable_push_batch(call_ids=[call_id])


def calls_airtable_push_batch(*, call_ids: list[int]) -> None:
    """Upsert the calls' records, up to 10 per request, grouped by base.

    Each call row is locked briefly to take a lease (so the sweep leaves it
    alone while it is in flight); the requests are made after that
    transaction. Missing calls are ignored.
    """
    if not call_ids:
        return
    if not settings.AIRTABLE_API_KEY:
        # Limitation: calls skipped while no key was set are not backfilled
        # once one is; the sweep only takes pending and failed calls.
        skipped = Call.objects.filter(pk__in=call_ids).update(
            airtable_state=Call.SyncState.SKIPPED,
            airtable_next_attempt_at=None,
            airtable_last_error="",
        )
        logger.info(
            "airtable: no AIRTABLE_API_KEY, %d call(s) skipped: ids=%s",
            skipped,
            call_ids,
        )
        return

    calls = _calls_claim(call_ids=call_ids)
    by_base: dict[str, list[Call]] = defaultdict(list)
    unconfigured = []
    for call in calls:
        base_id = call.business.airtable_base_id if call.business else ""
        if base_id:
            by_base[base_id].append(call)
        else:
            unconfigured.append(call.pk)
    if unconfigured:
        # Not retried in a loop: the sweep picks the call up only once its
        # business has a base id.
        Call.objects.filter(pk__in=unconfigured).update(
            airtable_state=Call.SyncState.PENDING,
            airtable_next_attempt_at=None,
            airtable_last_error=ERROR_NO_BASE,
        )
        logger.warning(
            "airtable: %s for the business of call ids=%s", ERROR_NO_BASE, unconfigured
        )
    if not by_base:
        return

    api = _api()
    limiter = airtable_rate_limiter()
    for base_id, base_calls in by_base.items():
        for start in range(0, len(base_calls), BATCH_SIZE):
            _chunk_push(
                api=api,
                limiter=limiter,
                base_id=base_id,
                calls=base_calls[start : start + BATCH_SIZE],
            )


def calls_airtable_sweep(
    *, now: datetime | None = None, limit: int = SWEEP_LIMIT
) -> int:
    """Push every call whose Airtable sync is due; return how many were taken.

    Due: pending or failed, with a base to write to, and either a next
    attempt time that has passed or (pending, never tried) older than the
    grace a new call's own push gets. Rows are claimed with SKIP LOCKED and a
    lease, so overlapping sweeps never push the same call twice.
    """
    if not settings.AIRTABLE_API_KEY:
        return 0
    now = now or timezone.now()
    due = Q(airtable_next_attempt_at__lte=now) | Q(
        airtable_state=Call.SyncState.PENDING,
        airtable_next_attempt_at__isnull=True,
        created_at__lte=now - timedelta(seconds=NEW_CALL_GRACE_SECONDS),
    )
    with transaction.atomic():
        ids = list(
            Call.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(airtable_state__in=[Call.SyncState.PENDING, Call.SyncState.FAILED])
            .filter(due)
            .exclude(business__isnull=True)
            .exclude(business__airtable_base_id="")
            .order_by("airtable_next_attempt_at", "pk")
            .values_list("pk", flat=True)[:limit]
        )
        Call.objects.filter(pk__in=ids).update(
            airtable_next_attempt_at=now + timedelta(seconds=LEASE_SECONDS)
        )
    if ids:
        logger.info("airtable: sweep took %d due call(s)", len(ids))
        calls_airtable_push_batch(call_ids=ids)
    return len(ids)


def _api() -> Api:
    # retry_strategy=None: pyairtable's default retries a 429 five times
    # within about three seconds, inside the request. Airtable wants thirty,
    # and a worker must not spend them asleep, so every failure comes back
    # here and becomes a due time on the call.
    timeout = settings.AIRTABLE_TIMEOUT_SECONDS
    return Api(
        settings.AIRTABLE_API_KEY,
        endpoint_url=settings.AIRTABLE_API_BASE_URL or DEFAULT_ENDPOINT,
        timeout=(min(5.0, timeout), timeout),
        retry_strategy=None,
    )


def airtable_rate_limiter() -> RateLimiter:
    """The limiter every worker shares: Airtable requests per base."""
    return rate_limiter_for(
        name="airtable",
        limit=settings.AIRTABLE_REQUESTS_PER_SECOND,
        period=RATE_WINDOW_SECONDS,
    )


def _calls_claim(*, call_ids: Iterable[int]) -> list[Call]:
    """Lock the calls, give them a lease and return them with their business.

    A synced call being pushed again goes back to pending, so a worker that
    dies mid-push leaves it for the sweep rather than looking done.
    """
    lease_end = timezone.now() + timedelta(seconds=LEASE_SECONDS)
    with transaction.atomic():
        calls = list(
            Call.objects.select_for_update(of=("self",))
            .select_related("business")
            .filter(pk__in=list(call_ids))
            .order_by("pk")
        )
        for call in calls:
            if call.airtable_state in (Call.SyncState.SYNCED, Call.SyncState.SKIPPED):
                call.airtable_state = Call.SyncState.PENDING
            call.airtable_next_attempt_at = lease_end
        Call.objects.bulk_update(
            calls, ["airtable_state", "airtable_next_attempt_at"], batch_size=500
        )
    return calls


def _chunk_push(
    *, api: Api, limiter: RateLimiter, base_id: str, calls: Sequence[Call]
) -> None:
    """One upsert request for at most 10 calls of one base, and its outcome."""
    ids = [call.pk for call in calls]
    try:
        rate_limit_acquire(limiter, key=base_id, max_wait=MAX_SLOT_WAIT_SECONDS)
    except RateLimitBlocked as exc:
        _calls_defer(
            calls=calls,
            seconds=exc.retry_after,
            state=Call.SyncState.FAILED,
            error=f"not sent: base {base_id} is in Airtable's rate-limit wait",
        )
        logger.info(
            "airtable: base=%s waiting %.1fs after a 429, deferred call ids=%s",
            base_id,
            exc.retry_after,
            ids,
        )
        return
    except RateLimitBusy as exc:
        _calls_defer(calls=calls, seconds=exc.retry_after)
        logger.info("airtable: base=%s busy, deferred call ids=%s", base_id, ids)
        return

    pushed = [call_airtable_fields(call) for call in calls]
    table = api.table(base_id, settings.AIRTABLE_CALLS_TABLE)
    try:
        result = table.batch_upsert(
            [{"fields": fields} for fields in pushed], key_fields=[FIELD_CALL_ID]
        )
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        error = f"HTTP {status}: {_error_text(exc)}"
        if status == 429:
            # Airtable refuses the whole base for 30 seconds: every worker
            # learns it from the limiter and sends nothing until then.
            wait = settings.AIRTABLE_RATE_LIMIT_WAIT_SECONDS
            limiter.block(base_id, seconds=wait)
            _calls_fail(calls=calls, error=error, retry_in=lambda attempts: wait)
            logger.warning(
                "airtable: base=%s answered 429, waiting %.0fs; call ids=%s",
                base_id,
                wait,
                ids,
            )
        elif status >= 500:
            _calls_fail(calls=calls, error=error, retry_in=_backoff)
            logger.warning("airtable: base=%s %s; call ids=%s", base_id, error, ids)
        else:
            # A refusal that repeating will not cure (bad key, unknown base or
            # table, a field Airtable rejects): recorded for an operator and
            # tried again only hourly, so a fixed configuration catches up.
            _calls_fail(calls=calls, error=error, retry_in=lambda a: RETRY_CAP_SECONDS)
            logger.error("airtable: base=%s %s; call ids=%s", base_id, error, ids)
        return
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"
        _calls_fail(calls=calls, error=error, retry_in=_backoff)
        logger.warning("airtable: base=%s %s; call ids=%s", base_id, error, ids)
        return

    _calls_mark_synced(calls=calls, pushed=pushed, result=result)
    logger.info(
        "airtable: base=%s upserted call ids=%s (%d created, %d updated)",
        base_id,
        ids,
        len(result["createdRecords"]),
        len(result["updatedRecords"]),
    )


def _backoff(attempts: int) -> float:
    delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.8, 1.2)


def _error_text(exc: requests.HTTPError) -> str:
    try:
        body = exc.response.json()
    except ValueError:
        return exc.response.reason or ""
    errors = body.get("errors") or [body.get("error")]
    first = errors[0] if errors else None
    if isinstance(first, dict):
        return first.get("error") or first.get("type") or str(first)
    return str(first or body)[:500]


def _calls_defer(
    *,
    calls: Sequence[Call],
    seconds: float,
    state: str | None = None,
    error: str | None = None,
) -> None:
    """Nothing was sent: only move the due time (and say why)."""
    changes: dict[str, Any] = {
        "airtable_next_attempt_at": timezone.now() + timedelta(seconds=seconds)
    }
    if state:
        changes["airtable_state"] = state
    if error:
        changes["airtable_last_error"] = error
    Call.objects.filter(pk__in=[call.pk for call in calls]).update(**changes)


def _calls_fail(
    *, calls: Sequence[Call], error: str, retry_in: Callable[[int], float]
) -> None:
    now = timezone.now()
    for call in calls:
        attempts = call.airtable_attempts + 1
        Call.objects.filter(pk=call.pk).update(
            airtable_state=Call.SyncState.FAILED,
            airtable_attempts=attempts,
            airtable_last_error=error,
            airtable_next_attempt_at=now + timedelta(seconds=retry_in(attempts)),
        )


def _calls_mark_synced(
    *, calls: Sequence[Call], pushed: list[dict[str, Any]], result: dict
) -> None:
    """Synced, unless the call changed while its record was on the way.

    Then the record holds older values: the call stays pending and is due
    at once, so the sweep sends the newer ones.
    """
    record_ids = {
        record["fields"].get(FIELD_CALL_ID): record["id"]
        for record in result["records"]
    }
    sent = {fields[FIELD_CALL_ID]: fields for fields in pushed}
    current = Call.objects.filter(pk__in=[call.pk for call in calls])
    now = timezone.now()
    for call in current:
        key = call.provider_call_id
        unchanged = sent.get(key) == call_airtable_fields(call)
        Call.objects.filter(pk=call.pk).update(
            airtable_state=Call.SyncState.SYNCED
            if unchanged
            else Call.SyncState.PENDING,
            airtable_record_id=record_ids.get(key, call.airtable_record_id),
            airtable_attempts=0,
            airtable_last_error="",
            airtable_next_attempt_at=None if unchanged else now,
        )
        if not unchanged:
            logger.info("airtable: call id=%s changed while pushed, due again", call.pk)
