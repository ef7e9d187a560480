"""Health: the runbook's five questions answered from the database, and the
sweep that opens a P0 incident when the pipeline goes quiet.

The field guide's runbook asks, in order: is call intake failing or just
slow; are webhooks arriving; are outbound notifications going out; is the
Airtable write failing; is the retry scheduler alive. Each `check_*`
function answers one with a `HealthAnswer`: ok/warn/fail, one line an
operator reads at 3 a.m., and the figures behind it. They read only the
database, with indexed look-ups over bounded windows, and name no person:
counts and times, never a phone number or an address.

`health_sweep` (beat, every minute) opens one P0 incident per component
when notifications are owed and not leaving for 10+ minutes (the field
guide's P0 rule) or when call webhooks have gone silent after hours. It
reuses the incident machinery: `incident_open_for_component` holds the
component's lock, so two sweeps never open two. Incidents open unowned, as
correlation opens them; support on-call is paged through the outbox and the
incident clock pages them again while the update is late. The sweep never
resolves an incident: it writes an internal note once when the check
recovers, and a human resolves.

`heartbeat_record` keeps the last-seen times of beat and worker
(`notifications.models.Heartbeat`), written by the heartbeat task;
`heartbeat_beat_record` is beat recording itself as it sends that task.
"""

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from accounts.models import Business
from afterhours.privacy import mask_email, mask_phone, mask_text
from intake.calls import EVENT_STUCK_AFTER, KIND_VOICE_STATUS, PROVIDER_TWILIO
from intake.models import Call, WebhookEvent
from notifications.fallback import SUPERSEDED
from notifications.models import Heartbeat, Notification
from notifications.services import notification_enqueue
from tickets.models import Priority

from .models import Component, Incident, IncidentUpdate
from .services import component_lock, incident_open_for_component, incident_post_update

logger = logging.getLogger(__name__)

OK, WARN, FAIL = "ok", "warn", "fail"
_RANK = {OK: 0, WARN: 1, FAIL: 2}

BEAT, WORKER = "beat", "worker"

# Bounds of every look-back: older rows were decided long ago, and an
# outage that old has had its incident for days.
LOOKBACK = dt.timedelta(days=7)
OWED_LOOKBACK = dt.timedelta(days=2)
RECENT = dt.timedelta(minutes=60)
FAILURE_WINDOW = dt.timedelta(minutes=15)
# A retry due this long and still not taken means the outbox sweep (every
# 30 s) is not running or the workers cannot keep up.
RETRY_OVERDUE = dt.timedelta(minutes=2)

OWED_STATES = (
    Notification.State.PENDING,
    Notification.State.SENDING,
    Notification.State.FAILED,
)
FAILED_STATES = (Notification.State.FAILED, Notification.State.UNDELIVERABLE)
SENT_STATES = (
    Notification.State.SENT,
    Notification.State.DELIVERED,
    Notification.State.LOGGED,
)
AIRTABLE_OWED = (Call.SyncState.PENDING, Call.SyncState.FAILED)

# Internal notes the sweep writes start with these; the latest of them says
# whether the incident's check was last seen failing or recovered.
NOTE_FAILING = "Health check failing: "
NOTE_RECOVERED = "Health check recovered: "
NOTE_PREFIX = "Health check "

# Customer-safe: the status page and the portal show an incident's title.
INCIDENT_TITLES = {
    Component.CALL_INTAKE: "Call events may be delayed",
    Component.SMS: "Call summaries by text message may be delayed",
    Component.EMAIL: "Email notifications may be delayed",
}
INCIDENT_IMPACT = {
    Component.CALL_INTAKE: (
        "Call events may be reaching us late; call summaries may be delayed."
    ),
    Component.SMS: "Call summaries and other text messages may arrive late.",
    Component.EMAIL: "Emails, including fallback emails, may arrive late.",
}
PAGE_TEXT = "afterhours P0 incident #{id} opened by the health check: {answer}"


@dataclass(frozen=True)
class HealthAnswer:
    """One runbook question answered: status, one line, the figures.

    The answer is public (/healthz shows it without login): counts, ages and
    process names only, never provider error text, hosts or ids. Detail for
    staff goes in the figures.
    """

    name: str
    question: str
    status: str
    answer: str
    figures: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class HealthReport:
    status: str
    checks: tuple[HealthAnswer, ...]
    checked_at: dt.datetime

    def check(self, name: str) -> HealthAnswer:
        return next(c for c in self.checks if c.name == name)


# --- The five checks ---------------------------------------------------------


def check_call_intake(*, now: dt.datetime | None = None) -> HealthAnswer:
    """1. Is call intake failing or just slow?

    Voice callbacks stored but not yet processed, and how old the oldest
    is: older than EVENT_STUCK_AFTER (when the sweep queues it again) is
    slow, older than HEALTH_INTAKE_STALE_MINUTES is failing.
    """
    now = now or timezone.now()
    stale = dt.timedelta(minutes=settings.HEALTH_INTAKE_STALE_MINUTES)
    events = WebhookEvent.objects.filter(
        provider=PROVIDER_TWILIO,
        kind=KIND_VOICE_STATUS,
        status__in=[WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED],
        received_at__gte=now - LOOKBACK,
    ).aggregate(
        pending=Count("id", filter=Q(status=WebhookEvent.Status.PENDING)),
        oldest=Min("received_at", filter=Q(status=WebhookEvent.Status.PENDING)),
        failed=Count(
            "id",
            filter=Q(status=WebhookEvent.Status.FAILED, received_at__gte=now - RECENT),
        ),
    )
    calls = Call.objects.filter(created_at__gte=now - RECENT).aggregate(
        recent=Count("id"),
        last=Max("created_at"),
        unrouted=Count("id", filter=Q(business__isnull=True)),
    )
    oldest_age = now - events["oldest"] if events["oldest"] else None
    figures = {
        "pending_callbacks": events["pending"],
        "oldest_pending_minutes": _minutes(oldest_age),
        "failed_callbacks_last_hour": events["failed"],
        "calls_last_hour": calls["recent"],
        "calls_to_no_business_last_hour": calls["unrouted"],
        "last_call_at": _iso(calls["last"]),
    }
    recorded = f"{calls['recent']} calls recorded in the last hour"
    if oldest_age is not None and oldest_age >= stale:
        status = FAIL
        answer = (
            f"Failing: {events['pending']} voice callbacks not processed, the "
            f"oldest for {_minutes(oldest_age)} min; {recorded}."
        )
    elif oldest_age is not None and oldest_age >= EVENT_STUCK_AFTER:
        status = WARN
        answer = (
            f"Slow: {events['pending']} voice callbacks waiting, the oldest for "
            f"{_minutes(oldest_age)} min (retried by the sweep); {recorded}."
        )
    elif events["failed"]:
        status = WARN
        answer = (
            f"Working, but {events['failed']} voice callbacks failed in the last "
            f"hour; {recorded}."
        )
    elif calls["unrouted"]:
        # Each such call was alerted to operations (intake.calls); this
        # says it is still happening.
        status = WARN
        answer = (
            f"Working, but {calls['unrouted']} calls in the last hour came in "
            f"on numbers no business owns; {recorded}."
        )
    else:
        status = OK
        answer = f"Working: no voice callback waiting; {recorded}."
    return HealthAnswer(
        "call_intake", "Is call intake failing or just slow?", status, answer, figures
    )


def check_webhooks(*, now: dt.datetime | None = None) -> HealthAnswer:
    """2. Are webhooks arriving?

    Silence: no voice callback for HEALTH_CALL_SILENCE_MINUTES, counting
    only the time when at least one business is outside its open hours (in
    its own zone, DST-safe), since that is when calls come to us. A quiet
    afternoon with every business open is not silence.
    """
    now = now or timezone.now()
    limit = dt.timedelta(minutes=settings.HEALTH_CALL_SILENCE_MINUTES)
    last_voice = WebhookEvent.objects.filter(
        provider=PROVIDER_TWILIO,
        kind=KIND_VOICE_STATUS,
        received_at__gte=now - LOOKBACK,
    ).aggregate(last=Max("received_at"))["last"]
    last_any = WebhookEvent.objects.filter(received_at__gte=now - LOOKBACK).aggregate(
        last=Max("received_at")
    )["last"]
    ever = Call.objects.exists()
    businesses = list(
        Business.objects.only("time_zone", "open_days", "opens_at", "closes_at")
    )

    since = last_voice or now - LOOKBACK
    quiet = now - since if last_voice else None
    counted = after_hours_between(businesses=businesses, start=since, end=now)
    closed_now = sum(1 for b in businesses if not _open_at(b, now))
    figures = {
        "last_voice_callback_at": _iso(last_voice),
        "minutes_since_voice_callback": _minutes(quiet),
        "after_hours_quiet_minutes": _minutes(counted),
        "silence_limit_minutes": settings.HEALTH_CALL_SILENCE_MINUTES,
        "last_webhook_at": _iso(last_any),
        "businesses": len(businesses),
        "businesses_closed_now": closed_now,
    }
    if not ever or not businesses:
        status = WARN
        answer = (
            "No call recorded yet, so silence is not judged."
            if not ever
            else "No business set up, so silence is not judged."
        )
    elif last_voice is None and not counted:
        status, answer = OK, "Quiet: no call webhook in 7 days, none after hours."
    elif counted >= limit:
        status = FAIL
        heard = (
            f"for {_minutes(quiet)} min"
            if quiet is not None
            else f"in the last {LOOKBACK.days} days"
        )
        answer = (
            f"Silence: no call webhook {heard}, {_minutes(counted)} min of it "
            f"after hours (limit {settings.HEALTH_CALL_SILENCE_MINUTES}); calls "
            "may not be reaching us."
        )
    else:
        status = OK
        answer = (
            f"Arriving: last call webhook {_minutes(quiet)} min ago; "
            f"{closed_now} of {len(businesses)} businesses are after hours now."
        )
    return HealthAnswer("webhooks", "Are webhooks arriving?", status, answer, figures)


def check_notifications(*, now: dt.datetime | None = None) -> HealthAnswer:
    """3. Are outbound notifications going out?

    Fails when an SMS or email has been owed for HEALTH_OUTBOX_STALE_MINUTES
    (the field guide's P0: no notifications for more than 10 minutes). A row
    held on purpose (a summary waiting for its report) is not owed until its
    hold ends. Warns on failures of the last FAILURE_WINDOW, and separately
    on the email fallback failing, since it is the safety net of SMS.
    """
    now = now or timezone.now()
    stale = dt.timedelta(minutes=settings.HEALTH_OUTBOX_STALE_MINUTES)
    sms, email = Notification.Channel.SMS, Notification.Channel.EMAIL
    owed = (
        Notification.objects.filter(
            state__in=OWED_STATES,
            created_at__lte=now - stale,
            created_at__gte=now - OWED_LOOKBACK,
        )
        .exclude(state=Notification.State.PENDING, next_attempt_at__gt=now, attempts=0)
        .aggregate(
            sms=Count("id", filter=Q(channel=sms)),
            email=Count("id", filter=Q(channel=email)),
            oldest=Min("created_at"),
        )
    )
    # Limitation: a failure is counted by when its message was owed (the
    # outbox keeps no time of failure); one owed earlier that fails now is
    # seen by the owed check above instead.
    failed = Q(state__in=FAILED_STATES) & ~Q(last_error_code=SUPERSEDED)
    recent = Notification.objects.filter(
        created_at__gte=now - FAILURE_WINDOW
    ).aggregate(
        sent=Count("id", filter=Q(state__in=SENT_STATES)),
        failed_sms=Count("id", filter=failed & Q(channel=sms)),
        failed_email=Count("id", filter=failed & Q(channel=email)),
        failed_fallback=Count("id", filter=failed & Q(fallback_of__isnull=False)),
    )
    oldest_age = now - owed["oldest"] if owed["oldest"] else None
    figures = {
        "owed_sms": owed["sms"],
        "owed_email": owed["email"],
        "oldest_owed_minutes": _minutes(oldest_age),
        "stale_after_minutes": settings.HEALTH_OUTBOX_STALE_MINUTES,
        "sent_last_15_min": recent["sent"],
        "failed_sms_last_15_min": recent["failed_sms"],
        "failed_email_last_15_min": recent["failed_email"],
        "failed_fallback_emails_last_15_min": recent["failed_fallback"],
    }
    minutes = _minutes(stale)
    if owed["sms"] or owed["email"]:
        status = FAIL
        answer = (
            f"Not going out: {owed['sms']} SMS and {owed['email']} emails owed "
            f"for more than {minutes} min (oldest {_minutes(oldest_age)} min)."
        )
    elif recent["failed_fallback"]:
        status = WARN
        answer = (
            f"The email fallback is failing: {recent['failed_fallback']} fallback "
            "emails failed in the last 15 min."
        )
    elif recent["failed_sms"] or recent["failed_email"]:
        status = WARN
        answer = (
            f"Going out, with failures: {recent['failed_sms']} SMS and "
            f"{recent['failed_email']} emails failed in the last 15 min."
        )
    else:
        status = OK
        answer = (
            f"Going out: nothing owed for more than {minutes} min; "
            f"{recent['sent']} sent in the last 15 min."
        )
    return HealthAnswer(
        "notifications",
        "Are outbound notifications going out?",
        status,
        answer,
        figures,
    )


def check_airtable(*, now: dt.datetime | None = None) -> HealthAnswer:
    """4. Is Airtable write failing?

    Fails when a call has waited HEALTH_AIRTABLE_STALE_MINUTES since its
    last change without reaching Airtable; warns while pushes fail and are
    retried. A call with nowhere to go (no business owns its number, or its
    business has no base) is never written nor retried, so it is counted
    apart and does not fail the check; check 1 warns about the unowned
    numbers. The provider's last error is a figure for staff, never in the
    answer, which /healthz shows to anyone.
    """
    now = now or timezone.now()
    stale = dt.timedelta(minutes=settings.HEALTH_AIRTABLE_STALE_MINUTES)
    writable = Q(business__isnull=False) & ~Q(business__airtable_base_id="")
    failed_state = writable & Q(airtable_state=Call.SyncState.FAILED)
    owed = Call.objects.filter(airtable_state__in=AIRTABLE_OWED)
    figures_row = owed.aggregate(
        failed=Count("id", filter=failed_state),
        waiting=Count("id", filter=writable & Q(updated_at__lte=now - stale)),
        oldest=Min("updated_at", filter=writable),
        nowhere=Count("id", filter=~writable),
    )
    last_error = (
        owed.filter(failed_state)
        .exclude(airtable_last_error="")
        .order_by("-airtable_next_attempt_at", "-id")
        .values_list("airtable_last_error", flat=True)
        .first()
    )
    error = _scrub(last_error or "")[:160]
    oldest_age = now - figures_row["oldest"] if figures_row["oldest"] else None
    figures = {
        "calls_not_in_airtable": figures_row["waiting"],
        "calls_retrying": figures_row["failed"],
        "calls_without_airtable_base": figures_row["nowhere"],
        "oldest_waiting_minutes": _minutes(oldest_age),
        "stale_after_minutes": settings.HEALTH_AIRTABLE_STALE_MINUTES,
        "last_error": error,
    }
    nowhere = (
        f" {figures_row['nowhere']} calls have no Airtable base to go to."
        if figures_row["nowhere"]
        else ""
    )
    if figures_row["waiting"]:
        status = FAIL
        answer = (
            f"Failing: {figures_row['waiting']} calls not in Airtable after "
            f"{_minutes(stale)} min (oldest {_minutes(oldest_age)} min)."
        )
    elif figures_row["failed"]:
        status = WARN
        answer = (
            f"Retrying: {figures_row['failed']} calls failed to reach Airtable "
            "and wait for a retry."
        )
    elif not settings.AIRTABLE_API_KEY:
        status, answer = OK, "Not configured here: calls are kept in our database."
    else:
        status, answer = OK, "Writing: every call is in Airtable or on its way."
    return HealthAnswer(
        "airtable", "Is Airtable write failing?", status, answer + nowhere, figures
    )


def check_scheduler(*, now: dt.datetime | None = None) -> HealthAnswer:
    """5. Is the retry scheduler alive?

    Beat and a worker each prove it through the heartbeat task (every 30 s):
    beat records itself when it sends it, a worker when it runs it; older
    than HEALTH_HEARTBEAT_STALE_SECONDS fails, naming only the silent one.
    With beat silent no heartbeat reaches the worker either, so a worker
    that ran the last heartbeat beat sent is called idle, not down. Retries due for
    RETRY_OVERDUE and not taken warn: the sweep runs but cannot keep up.
    """
    now = now or timezone.now()
    stale = dt.timedelta(seconds=settings.HEALTH_HEARTBEAT_STALE_SECONDS)
    seen = dict(
        Heartbeat.objects.filter(name__in=[BEAT, WORKER]).values_list(
            "name", "last_seen"
        )
    )
    overdue = Notification.objects.filter(
        state__in=OWED_STATES,
        next_attempt_at__lte=now - RETRY_OVERDUE,
        next_attempt_at__gte=now - OWED_LOOKBACK,
    ).count()
    ages = {name: now - seen[name] if name in seen else None for name in (BEAT, WORKER)}
    figures = {
        "beat_last_seen_at": _iso(seen.get(BEAT)),
        "worker_last_seen_at": _iso(seen.get(WORKER)),
        "beat_seconds_ago": _seconds(ages[BEAT]),
        "worker_seconds_ago": _seconds(ages[WORKER]),
        "stale_after_seconds": settings.HEALTH_HEARTBEAT_STALE_SECONDS,
        "retries_overdue": overdue,
    }
    down = [name for name, age in ages.items() if age is None or age > stale]

    def said(name: str) -> str:
        age = ages[name]
        if age is None:
            return f"{name} never seen"
        return f"{name} seen {_age_text(age)} ago"

    def silent_for(name: str) -> str:
        age = ages[name]
        return "never seen" if age is None else f"silent for {_age_text(age)}"

    both = f"{said(BEAT)}, {said(WORKER)}"
    not_sent = "; retries are not being sent."
    if down == [WORKER]:
        status = FAIL
        answer = (
            f"Down: worker {silent_for(WORKER)}; beat is running "
            f"({said(BEAT)}){not_sent}"
        )
    elif down == [BEAT] or (BEAT in down and _worker_idle(seen)):
        # Only beat sends the heartbeat: a worker that ran the last one beat
        # sent has simply had nothing since.
        status = FAIL
        answer = (
            f"Down: beat {silent_for(BEAT)}; worker idle and running (ran the "
            f"last heartbeat beat sent, {said(WORKER)}){not_sent}"
        )
    elif down:
        status = FAIL
        answer = f"Down: beat and worker silent ({both}){not_sent}"
    elif overdue:
        status = WARN
        answer = (
            f"Alive ({both}), but {overdue} retries are overdue by more than "
            f"{_age_text(RETRY_OVERDUE)}."
        )
    else:
        status, answer = OK, f"Alive: {both}."
    return HealthAnswer(
        "scheduler", "Is the retry scheduler alive?", status, answer, figures
    )


# Beat stamps its time before the worker's; a worker a little behind it by
# the clocks of two hosts still ran that heartbeat.
CLOCK_SKEW = dt.timedelta(seconds=5)


def _worker_idle(seen: dict[str, dt.datetime]) -> bool:
    worker, beat = seen.get(WORKER), seen.get(BEAT)
    if worker is None:
        return False
    return beat is None or worker >= beat - CLOCK_SKEW


CHECKS = (
    check_call_intake,
    check_webhooks,
    check_notifications,
    check_airtable,
    check_scheduler,
)


def health_report(*, now: dt.datetime | None = None) -> HealthReport:
    """The five answers in the runbook's order; overall, the worst of them."""
    now = now or timezone.now()
    checks = tuple(check(now=now) for check in CHECKS)
    status = max((c.status for c in checks), key=_RANK.__getitem__)
    return HealthReport(status=status, checks=checks, checked_at=now)


# --- Open hours --------------------------------------------------------------


def after_hours_between(
    *, businesses: Sequence[Business], start: dt.datetime, end: dt.datetime
) -> dt.timedelta:
    """How much of [start, end) at least one business spends closed.

    Open hours as `tickets.sla` reads them (the business's valid open days,
    open and close times in its own zone, each day's window through UTC so
    a DST night is neither an hour long nor short), except that a business
    open on no day is closed all the time, as `Business.is_open_at` says,
    not given the SLA clock's default hours. No business: no time counts.
    """
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    if not businesses or end <= start:
        return dt.timedelta(0)
    all_open = [(start, end)]
    for business in businesses:
        all_open = _intersect(all_open, _open_windows(business, start, end))
        if not all_open:
            break
    return (end - start) - sum((b - a for a, b in all_open), dt.timedelta(0))


def _open_windows(
    business: Business, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    days = business.open_day_numbers
    if not days:
        return []
    zone = business.zone
    day = start.astimezone(zone).date() - dt.timedelta(days=1)
    last = end.astimezone(zone).date()
    windows = []
    while day <= last:
        if day.weekday() in days:
            # As tickets.sla.OpenHours: fold=0 and a trip through UTC put a
            # wall time inside a DST gap on a real instant.
            opens = dt.datetime.combine(day, business.opens_at, zone).astimezone(dt.UTC)
            closes = dt.datetime.combine(day, business.closes_at, zone).astimezone(
                dt.UTC
            )
            begin, finish = max(opens, start), min(closes, end)
            if begin < finish:
                windows.append((begin, finish))
        day += dt.timedelta(days=1)
    return windows


def _intersect(
    left: list[tuple[dt.datetime, dt.datetime]],
    right: list[tuple[dt.datetime, dt.datetime]],
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The overlap of two sorted lists of disjoint intervals."""
    out, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        begin = max(left[i][0], right[j][0])
        finish = min(left[i][1], right[j][1])
        if begin < finish:
            out.append((begin, finish))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def _open_at(business: Business, moment: dt.datetime) -> bool:
    return bool(_open_windows(business, moment, moment + dt.timedelta(seconds=1)))


# --- Heartbeat ---------------------------------------------------------------


def heartbeat_record(
    *, beat_sent_at: dt.datetime | None, now: dt.datetime | None = None
) -> None:
    """Record that a worker ran the heartbeat now, and beat sent it then.

    Beat's time is the moment it sent the task, so a queue that held it for
    a while still shows when beat was last alive; it never moves back (a
    late message after a newer one). Without a sent time (the task sent by
    hand, not by beat) only the worker is recorded.
    """
    now = now or timezone.now()
    Heartbeat.objects.update_or_create(name=WORKER, defaults={"last_seen": now})
    if beat_sent_at is None:
        return
    if timezone.is_naive(beat_sent_at):
        raise ValueError("beat_sent_at must be an aware datetime")
    row, created = Heartbeat.objects.get_or_create(
        name=BEAT, defaults={"last_seen": beat_sent_at}
    )
    if not created:
        Heartbeat.objects.filter(pk=row.pk, last_seen__lt=beat_sent_at).update(
            last_seen=beat_sent_at
        )


def heartbeat_beat_record(*, now: dt.datetime | None = None) -> None:
    """Record, from the beat process, that beat is sending the heartbeat now.

    Beat proves itself without a worker, so a stopped worker does not make
    beat look dead. Never moves back. Two statements on one indexed row.
    """
    now = now or timezone.now()
    row, created = Heartbeat.objects.get_or_create(
        name=BEAT, defaults={"last_seen": now}
    )
    if not created:
        Heartbeat.objects.filter(pk=row.pk, last_seen__lt=now).update(last_seen=now)


# --- The sweep ---------------------------------------------------------------


def health_sweep(*, now: dt.datetime | None = None) -> HealthReport:
    """Beat, every minute: open a P0 when the pipeline goes quiet.

    Silence of call webhooks opens one for call intake; notifications owed
    and not leaving open one for SMS (when SMS is among them) or email. An
    incident already open for the component gets an internal note instead,
    once per failure. When a watched component's check is no longer failing,
    its open incident gets one internal note saying so; a human resolves.
    """
    now = now or timezone.now()
    report = health_report(now=now)
    webhooks = report.check("webhooks")
    outbox = report.check("notifications")

    failing: dict[str, HealthAnswer] = {}
    if webhooks.status == FAIL:
        failing[Component.CALL_INTAKE] = webhooks
    if outbox.status == FAIL:
        channel = Component.SMS if outbox.figures["owed_sms"] else Component.EMAIL
        failing[channel] = outbox
    for component, answer in failing.items():
        health_incident_raise(component=component, answer=answer, now=now)

    watched = {
        Component.CALL_INTAKE: webhooks,
        Component.SMS: outbox,
        Component.EMAIL: outbox,
    }
    open_components = set(
        Incident.objects.filter(component__in=list(watched))
        .exclude(status=Incident.Status.RESOLVED)
        .values_list("component", flat=True)
    )
    for component in sorted(open_components - set(failing)):
        health_incident_recovered(
            component=component, answer=watched[component], now=now
        )
    if report.status != OK:
        logger.warning(
            "health: %s (%s)",
            report.status,
            "; ".join(f"{c.name}={c.status}" for c in report.checks),
        )
    return report


def health_incident_raise(
    *, component: str, answer: HealthAnswer, now: dt.datetime
) -> Incident:
    """The component's open P0 incident for a failing check, opened if none.

    Holds the component's lock (`component_lock`, taken by
    `incident_open_for_component`) to the end, so the page and the note are
    written once however many sweeps run. A new incident pages support
    on-call; one already open gets a failing note unless its latest health
    note already says so.
    """
    pages = _page_channels(component)
    note = NOTE_FAILING + _note_body(answer)
    with transaction.atomic():
        incident, opened = incident_open_for_component(
            component=component,
            priority=Priority.P0,
            opened_at=now,
            title=INCIDENT_TITLES[component],
            impact=INCIDENT_IMPACT[component],
            opened_by_health_check=True,
            note=note + _paged_text(pages),
        )
        if opened:
            paged = _page_support(incident=incident, answer=answer, channels=pages)
        elif _last_health_note_failing(incident):
            return incident
        else:
            paged = 0
            incident_post_update(
                incident=incident,
                author=None,
                status=incident.status,
                body=note,
                next_update_at=None,
                customer_facing=False,
                now=now,
            )
    logger.warning(
        "health: %s failing, incident=%s opened=%s paged=%s: %s",
        component,
        incident.pk,
        opened,
        paged,
        answer.answer,
    )
    return incident


def health_incident_recovered(
    *, component: str, answer: HealthAnswer, now: dt.datetime
) -> IncidentUpdate | None:
    """Note once on the component's open incident that its check recovered.

    Only an incident whose latest health note says failing gets one; the
    incident stays open for a human to resolve.
    """
    with transaction.atomic():
        component_lock(component)
        incident = (
            Incident.objects.filter(component=component)
            .exclude(status=Incident.Status.RESOLVED)
            .order_by("opened_at", "id")
            .first()
        )
        if incident is None or not _last_health_note_failing(incident):
            return None
        update = incident_post_update(
            incident=incident,
            author=None,
            status=incident.status,
            body=NOTE_RECOVERED
            + _note_body(answer)
            + " Not resolved automatically: resolve it once customers are told.",
            next_update_at=None,
            customer_facing=False,
            now=now,
        )
    logger.info(
        "health: %s recovered, incident=%s note=%s", component, incident.pk, update.pk
    )
    return update


def _last_health_note_failing(incident: Incident) -> bool:
    body = (
        IncidentUpdate.objects.filter(
            incident=incident, customer_facing=False, body__startswith=NOTE_PREFIX
        )
        .order_by("-id")
        .values_list("body", flat=True)
        .first()
    )
    return bool(body) and body.startswith(NOTE_FAILING)


def _page_channels(component: str) -> list[tuple[str, str]]:
    """Support on-call by SMS, and by email too when SMS is what is failing
    (or there is no on-call phone)."""
    phone, email = settings.SUPPORT_ONCALL_PHONE, settings.SUPPORT_ONCALL_EMAIL
    channels = []
    if phone:
        channels.append((Notification.Channel.SMS, phone))
    if email and (component == Component.SMS or not phone):
        channels.append((Notification.Channel.EMAIL, email))
    return channels


def _page_support(
    *, incident: Incident, answer: HealthAnswer, channels: Iterable[tuple[str, str]]
) -> int:
    body = PAGE_TEXT.format(id=incident.pk, answer=answer.answer)
    paged = 0
    for channel, recipient in channels:
        _, created = notification_enqueue(
            channel=channel,
            reason=Notification.Reason.P0_PAGE,
            recipient=recipient,
            subject=f"P0 incident #{incident.pk}: {incident.title}"
            if channel == Notification.Channel.EMAIL
            else "",
            body=body,
            headers={"Auto-Submitted": "auto-generated"}
            if channel == Notification.Channel.EMAIL
            else None,
            dedupe_key=f"health_page:{incident.pk}:{channel}",
            incident=incident,
        )
        paged += int(created)
        logger.info(
            "health: incident=%s support on-call paged by %s %s",
            incident.pk,
            channel,
            mask_phone(recipient)
            if channel == Notification.Channel.SMS
            else mask_email(recipient),
        )
    if not paged:
        logger.error(
            "health: incident=%s opened but nobody paged (no SUPPORT_ONCALL_PHONE "
            "or SUPPORT_ONCALL_EMAIL)",
            incident.pk,
        )
    return paged


def _paged_text(channels: Sequence[tuple[str, str]]) -> str:
    if not channels:
        return " Nobody paged: no support on-call phone or email is configured."
    names = " and ".join(
        "SMS" if c == Notification.Channel.SMS else c for c, _ in channels
    )
    return f" Support on-call paged by {names}."


def _note_body(answer: HealthAnswer) -> str:
    figures = ", ".join(f"{k}={v}" for k, v in answer.figures.items() if v != "")
    text = f"{answer.question} {answer.answer} ({figures})."
    # Timeline text is a template to the incident services: no stray braces
    # (an Airtable error is JSON).
    return text.replace("{", "(").replace("}", ")")


def _scrub(text: str) -> str:
    """Provider error text with any phone number or address masked."""
    return mask_text(text)


def _minutes(delta: dt.timedelta | None) -> int | None:
    return None if delta is None else max(0, int(delta.total_seconds() // 60))


def _seconds(delta: dt.timedelta | None) -> int | None:
    return None if delta is None else max(0, int(delta.total_seconds()))


def _age_text(delta: dt.timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat() if moment else None
