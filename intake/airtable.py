"""Mirror each call to its business's Airtable "Calls" table.

One record per call, upserted on the "Call ID" field, so a retry (after a
timeout, a 5xx, a killed worker) updates the record instead of adding a
second one. Retry state lives on the Call row (airtable_state, attempts,
next attempt, last error) and the beat sweep picks up what is due, so a
restart loses nothing and no task sleeps through Airtable's 30-second wait.

Airtable allows 5 requests a second per base; every worker takes a slot
from one shared limiter (intake.ratelimit) before each request. At 20 calls
a second that is less than one request a call, so requests carry whatever
is due for their base, up to 10 records: a call's own sync task pushes at
once when a slot is free, taking other due calls of its base along, and
otherwise leaves its call due and returns, because it shares its worker
with the SMS that must leave within a second. The sweep carries the rest.

A push holds its calls under a lease (airtable_leased_until) so no second
push of the same call is in flight at once: two could land out of order
and leave the older values in Airtable. A call that changes while leased
is found changed when its push returns and is due again at once.
"""

import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, IntegerField, Q, QuerySet, Value, When
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
# The longest the sweep waits for a free slot on a base before it moves on;
# a call's own sync task never waits.
MAX_SLOT_WAIT_SECONDS = 3.0
# A push in flight holds its calls this long; if its worker dies, the calls
# are due again once the lease runs out.
LEASE_SECONDS = 120
RETRY_BASE_SECONDS = 15
RETRY_CAP_SECONDS = 3600
SWEEP_LIMIT = 200
# A sweep stops taking new batches after this long, so it ends before the
# next one starts (beat runs it every 10 s).
SWEEP_BUDGET_SECONDS = 8.0
SYNCABLE = (Call.SyncState.PENDING, Call.SyncState.FAILED)
# Airtable's limit for one long text cell; a longer value would refuse the
# whole request.
MAX_CELL_CHARS = 100_000


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
        "Summary": _cell_text(call.summary),
        "Urgency": call.urgency,
    }


def _cell_text(text: str) -> str:
    if len(text) <= MAX_CELL_CHARS:
        return text
    return text[: MAX_CELL_CHARS - 1] + "…"


def call_airtable_changed(call: Call) -> None:
    """Mark a call's record stale: due for a push at once.

    Call when something Airtable shows changed, before saving the call
    (add "airtable_state" and "airtable_next_attempt_at" to update_fields).
    A push in flight keeps its lease; it sees the change when it returns.
    """
    call.airtable_state = Call.SyncState.PENDING
    call.airtable_next_attempt_at = None


def call_airtable_push(*, call_id: int) -> None:
    """A call's own sync: push it now if its base has a free slot.

    The request also carries up to nine other calls of the same base that
    are due. With no free slot, or the call already pushed by someone else,
    nothing happens: the call stays due for the next push of its base or
    the sweep. Call outside any transaction (it talks to Airtable); a
    failure is recorded on the calls with a due time, never raised.
    """
    call = Call.objects.select_related("business").filter(pk=call_id).first()
    if call is None or call.airtable_state not in SYNCABLE:
        return
    if not settings.AIRTABLE_API_KEY:
        # Limitation: calls skipped while no key was set are not backfilled
        # once one is; the sweep only takes pending and failed calls.
        Call.objects.filter(pk=call.pk).update(
            airtable_state=Call.SyncState.SKIPPED,
            airtable_next_attempt_at=None,
            airtable_last_error="",
        )
        logger.info("airtable: no AIRTABLE_API_KEY, call id=%s skipped", call.pk)
        return
    base_id = call.business.airtable_base_id if call.business else ""
    if not base_id:
        # Not retried in a loop: the sweep picks the call up only once its
        # business has a base id.
        Call.objects.filter(pk=call.pk).update(
            airtable_next_attempt_at=None, airtable_last_error=ERROR_NO_BASE
        )
        logger.warning(
            "airtable: %s for the business of call id=%s", ERROR_NO_BASE, call.pk
        )
        return
    _base_push(
        api=_api(),
        limiter=airtable_rate_limiter(),
        base_id=base_id,
        now=timezone.now(),
        first_id=call.pk,
        max_wait=0.0,
    )


def calls_airtable_sweep(
    *, now: datetime | None = None, limit: int = SWEEP_LIMIT
) -> int:
    """Push the calls whose Airtable sync is due; return how many were taken.

    Due: pending or failed, with a base to write to, no push in flight, and
    no due time in the future. Bases take turns, one batch of up to 10 each,
    until nothing is due, `limit` calls are taken or the sweep's time is up.
    """
    if not settings.AIRTABLE_API_KEY:
        return 0
    now = now or timezone.now()
    bases = list(
        _calls_due(now)
        .exclude(business__isnull=True)
        .exclude(business__airtable_base_id="")
        .order_by()
        .values_list("business__airtable_base_id", flat=True)
        .distinct()[:100]
    )
    if not bases:
        return 0
    api = _api()
    limiter = airtable_rate_limiter()
    stop_at = time.monotonic() + SWEEP_BUDGET_SECONDS
    taken = 0
    while bases and taken < limit and time.monotonic() < stop_at:
        for base_id in list(bases):
            pushed = _base_push(
                api=api,
                limiter=limiter,
                base_id=base_id,
                now=now,
                max_wait=MAX_SLOT_WAIT_SECONDS,
                max_records=min(BATCH_SIZE, limit - taken),
            )
            taken += pushed
            if not pushed or taken >= limit or time.monotonic() >= stop_at:
                # Nothing more due there, or it is busy or refusing.
                bases.remove(base_id)
            if taken >= limit or time.monotonic() >= stop_at:
                break
    if taken:
        logger.info("airtable: sweep took %d due call(s)", taken)
    return taken


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


def _calls_due(now: datetime) -> QuerySet[Call]:
    return Call.objects.filter(
        Q(airtable_next_attempt_at__isnull=True) | Q(airtable_next_attempt_at__lte=now),
        Q(airtable_leased_until__isnull=True) | Q(airtable_leased_until__lte=now),
        airtable_state__in=SYNCABLE,
    )


def _calls_claim(
    *,
    base_id: str,
    now: datetime,
    first_id: int | None = None,
    limit: int = BATCH_SIZE,
) -> list[Call]:
    """Lease up to `limit` due calls of one base, `first_id` first if due.

    Rows another push is claiming right now are skipped (SKIP LOCKED), and
    leased ones are not due, so one call is never in two pushes at once. A
    call that must go alone goes alone when it comes first, and is left out
    of other batches.
    """
    first = Case(
        When(pk=first_id, then=Value(0)), default=Value(1), output_field=IntegerField()
    )
    with transaction.atomic():
        calls = list(
            _calls_due(now)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("business")
            .filter(business__airtable_base_id=base_id)
            .order_by(first, F("airtable_next_attempt_at").asc(nulls_first=True), "pk")[
                :limit
            ]
        )
        if calls and calls[0].airtable_push_alone:
            calls = calls[:1]
        else:
            calls = [call for call in calls if not call.airtable_push_alone]
        Call.objects.filter(pk__in=[call.pk for call in calls]).update(
            airtable_leased_until=now + timedelta(seconds=LEASE_SECONDS)
        )
    return calls


def _base_push(
    *,
    api: Api,
    limiter: RateLimiter,
    base_id: str,
    now: datetime,
    max_wait: float,
    first_id: int | None = None,
    max_records: int = BATCH_SIZE,
) -> int:
    """One upsert request for the due calls of a base; how many it carried.

    0 when nothing was due or no slot came within `max_wait` (the calls go
    back, still due) or the base is in Airtable's rate-limit wait.
    """
    calls = _calls_claim(base_id=base_id, now=now, first_id=first_id, limit=max_records)
    if not calls:
        return 0
    ids = [call.pk for call in calls]
    try:
        rate_limit_acquire(limiter, key=base_id, max_wait=max_wait)
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
        return 0
    except RateLimitBusy:
        # Still due: the next push of this base or the sweep takes them.
        Call.objects.filter(pk__in=ids).update(airtable_leased_until=None)
        return 0
    _calls_send(api=api, limiter=limiter, base_id=base_id, calls=calls)
    return len(calls)


def _calls_send(
    *, api: Api, limiter: RateLimiter, base_id: str, calls: Sequence[Call]
) -> None:
    """Upsert the leased calls of one base (a slot is taken); record it."""
    ids = [call.pk for call in calls]
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
        elif len(calls) > 1:
            # Airtable refuses a whole request for one record it will not
            # take, and does not say which: each call goes again alone, soon.
            _calls_fail(calls=calls, error=error, retry_in=_backoff, alone=True)
            logger.warning(
                "airtable: base=%s %s; call ids=%s go again one by one",
                base_id,
                error,
                ids,
            )
        else:
            # A refusal that repeating will not cure (bad key, unknown base or
            # table, a value Airtable rejects): recorded for an operator and
            # tried again only hourly, so a fixed configuration catches up.
            _calls_fail(
                calls=calls,
                error=error,
                retry_in=lambda attempts: RETRY_CAP_SECONDS,
                alone=True,
            )
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
    """Nothing was sent: move the due time (and say why), end the lease."""
    changes: dict[str, Any] = {
        "airtable_next_attempt_at": timezone.now() + timedelta(seconds=seconds),
        "airtable_leased_until": None,
    }
    if state:
        changes["airtable_state"] = state
    if error:
        changes["airtable_last_error"] = error
    Call.objects.filter(pk__in=[call.pk for call in calls]).update(**changes)


def _calls_fail(
    *,
    calls: Sequence[Call],
    error: str,
    retry_in: Callable[[int], float],
    alone: bool = False,
) -> None:
    now = timezone.now()
    for call in calls:
        attempts = call.airtable_attempts + 1
        Call.objects.filter(pk=call.pk).update(
            airtable_state=Call.SyncState.FAILED,
            airtable_attempts=attempts,
            airtable_last_error=error,
            airtable_next_attempt_at=now + timedelta(seconds=retry_in(attempts)),
            airtable_leased_until=None,
            airtable_push_alone=alone or call.airtable_push_alone,
        )


def _calls_mark_synced(
    *, calls: Sequence[Call], pushed: list[dict[str, Any]], result: dict
) -> None:
    """Synced, unless the call changed while its record was on the way.

    Then the record holds older values: the call stays pending and is due
    at once. The calls are compared under their row locks, which every
    change of a call takes too, so a change cannot slip in between the
    comparison and "synced".
    """
    record_ids = {
        record["fields"].get(FIELD_CALL_ID): record["id"]
        for record in result["records"]
    }
    sent = {fields[FIELD_CALL_ID]: fields for fields in pushed}
    changed = []
    with transaction.atomic():
        current = Call.objects.select_for_update().filter(
            pk__in=[call.pk for call in calls]
        )
        for call in current.order_by("pk"):
            key = call.provider_call_id
            unchanged = sent.get(key) == call_airtable_fields(call)
            Call.objects.filter(pk=call.pk).update(
                airtable_state=Call.SyncState.SYNCED
                if unchanged
                else Call.SyncState.PENDING,
                airtable_record_id=record_ids.get(key, call.airtable_record_id),
                airtable_attempts=0,
                airtable_last_error="",
                airtable_next_attempt_at=None,
                airtable_leased_until=None,
                airtable_push_alone=False,
            )
            if not unchanged:
                changed.append(call.pk)
    if changed:
        logger.info("airtable: call ids=%s changed while pushed, due again", changed)
