"""The product's own processes on loopback, for fault runs.

A fault run starts, as subprocesses, what the call pipeline is made of in
production: its own redis-server on a free port (never the shared one on
6379), gunicorn serving the product, Celery worker processes and Celery
beat, all on the pytest-django test database. The Twilio and Airtable
stand-ins run as threads of the test. Webhooks reach the product over HTTP,
signed as the providers sign them, so every task the product queues goes
to this run's Redis, where a restart can lose it. Workers write mail to
files (settings.test, AFTERHOURS_TEST_MAIL_DIR), which the test reads as the
ESP's record of what was sent.

The sweeps find lost work by its age: an SMS claim's lease (1 minute), an
Airtable push's lease (2 minutes), a stuck inbox row (1-2 minutes), an
outbox row whose task never ran (3 minutes). Instead of waiting that long,
`FaultRun.settle` moves the clock of the pipeline's rows forward about a
minute at a time, and only while nothing is happening (the queue empty, no
stand-in request open, every SMS reported, no row changed for a few
seconds), so the sweeps meet lost work in the order real time would bring
it, and the delivery deadline (5 minutes) passes only for what really
stayed unconfirmed.
"""

import email
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import redis
import requests
from django.conf import settings
from django.db import connection
from twilio.request_validator import RequestValidator

from intake.call_summary import call_summary_signature
from intake.models import Call, WebhookEvent
from notifications.models import Notification
from standins.airtable import AirtableStandIn
from standins.twilio import TwilioStandIn

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
# How far one step of `FaultRun.advance_clock` moves the rows' clock: longer
# than the shortest sweep threshold (a stuck SMS report, 1 minute), so every
# step lets the sweeps take the next kind of lost work.
CLOCK_STEP = timedelta(seconds=65)
# The pipeline counts as idle once nothing moved for this long.
QUIET_SECONDS = 3.0

State = Notification.State
UNFINISHED_STATES = (State.PENDING, State.SENDING, State.FAILED)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_for(
    condition: Callable[[], object],
    *,
    what: str,
    timeout: float = 90.0,
    interval: float = 0.2,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(interval)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(process: subprocess.Popen | None, *, timeout: float = 20) -> None:
    """SIGTERM (a warm shutdown), then SIGKILL if it does not go."""
    stop_processes([process], timeout=timeout)


def stop_processes(
    processes: list[subprocess.Popen | None], *, timeout: float = 15
) -> None:
    """SIGTERM to all at once, then SIGKILL to whatever is left at `timeout`."""
    running = [p for p in processes if p is not None and p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class RedisServer:
    """A redis-server of our own on a loopback port, persisting nothing.

    With nothing saved, a restart loses every queued task: the product must
    recover from the database alone.
    """

    def __init__(self, *, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> "RedisServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                LOOPBACK,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(self.ping, what=f"redis-server on port {self.port}", timeout=20)
        return self

    def ping(self) -> bool:
        try:
            return bool(redis.Redis(host=LOOPBACK, port=self.port).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def restart(self, *, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


# --- What the providers post ------------------------------------------------


@dataclass(frozen=True)
class CallPlan:
    """One call the provider will report: its id, line and summary.

    An empty summary: the provider sends no end-of-call report for it.
    """

    sid: str
    line: str
    caller: str
    duration: int
    summary: str

    @property
    def webhooks(self) -> int:
        return 3 if self.summary else 2


def celery_worker_command(
    *, name: str, concurrency: int, loglevel: str = "WARNING"
) -> list[str]:
    """A thread-pool Celery worker on the run's own queue, as the fault runs
    and bench/delivery.py start it."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "afterhours",
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        "--without-gossip",
        "--without-mingle",
        f"--loglevel={loglevel}",
        f"--hostname={name}@%h",
        f"--queues={settings.CELERY_TASK_DEFAULT_QUEUE}",
    ]


def celery_beat_command(*, schedule: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "afterhours",
        "beat",
        "--loglevel=WARNING",
        f"--schedule={schedule}",
    ]


def plan_calls(
    count: int, *, lines: list[str], seed: int = 0, without_report: int = 0
) -> list[CallPlan]:
    """`count` calls spread over the lines; every SMS body comes out unique.

    Every `without_report`-th call gets no end-of-call report (0: all do).
    """
    rng = random.Random(seed)
    topics = [
        "water heater leaking into the basement",
        "no heat, elderly tenant",
        "dog swallowed a sock",
        "breaker keeps tripping",
    ]
    return [
        CallPlan(
            sid=f"CA{hashlib.sha256(f'{seed}:{n}'.encode()).hexdigest()[:32]}",
            line=lines[n % len(lines)],
            caller=f"+1617555{199 - n % 100:04d}",
            duration=30 + n,
            summary=""
            if without_report and n % without_report == without_report - 1
            else f"Fault run call {n}: {rng.choice(topics)}",
        )
        for n in range(count)
    ]


class Provider:
    """Twilio and the call provider, posting signed webhooks to the product."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._local = threading.local()
        self._validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)

    @property
    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _signed_url(self, path: str) -> str:
        # Twilio signs the public URL it was given, not our loopback one.
        return settings.PUBLIC_BASE_URL.rstrip("/") + path

    def _post(self, path: str, **kwargs) -> int:
        # Providers retry what we do not answer; so does this, briefly.
        for attempt in range(5):
            try:
                response = self._session.post(
                    self.base_url + path, timeout=30, **kwargs
                )
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.5 * (attempt + 1))
                continue
            if response.status_code < 500:
                return response.status_code
            time.sleep(0.5 * (attempt + 1))
        return 599

    def post_form(self, path: str, params: dict[str, str]) -> int:
        signature = self._validator.compute_signature(self._signed_url(path), params)
        return self._post(path, data=params, headers={"X-Twilio-Signature": signature})

    def voice_status(self, call: CallPlan, *, status: str, sequence: int) -> int:
        params = {
            "AccountSid": settings.TWILIO_ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": call.sid,
            "CallStatus": status,
            "CallbackSource": "call-progress-events",
            "Direction": "inbound",
            "From": call.caller,
            "To": call.line,
            "SequenceNumber": str(sequence),
            "Timestamp": format_datetime(datetime.now(UTC)),
        }
        if status == "completed":
            params["CallDuration"] = str(call.duration)
        return self.post_form("/webhooks/twilio/voice/", params)

    def call_summary(self, call: CallPlan) -> int:
        body = json.dumps(
            {
                "call_id": call.sid,
                "summary": call.summary,
                "urgency": "high",
                "to": call.line,
            }
        ).encode()
        stamp = int(time.time())
        digest = call_summary_signature(
            secret=settings.CALL_SUMMARY_WEBHOOK_SECRET, timestamp=stamp, body=body
        )
        return self._post(
            "/webhooks/calls/summary/",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Afterhours-Signature": f"t={stamp},v1={digest}",
            },
        )

    def sms_status(self, message: dict, status: str) -> int:
        params = {
            "AccountSid": message["account_sid"],
            "ApiVersion": "2010-04-01",
            "From": message["from"],
            "MessageSid": message["sid"],
            "MessageStatus": status,
            "SmsSid": message["sid"],
            "SmsStatus": status,
            "To": message["to"],
        }
        return self.post_form("/webhooks/twilio/sms-status/", params)

    def one_call(self, call: CallPlan) -> list[int]:
        """Ringing, completed, then the end-of-call report: their statuses."""
        answers = [
            self.voice_status(call, status="ringing", sequence=1),
            self.voice_status(call, status="completed", sequence=3),
        ]
        if call.summary:
            answers.append(self.call_summary(call))
        return answers


class Traffic:
    """Calls posted at a steady rate from a few threads.

    `allow(n)` holds back every call from the n-th on until allowed, so a
    test can spread the calls over its faults however long those take.
    """

    def __init__(
        self,
        provider: Provider,
        calls: list[CallPlan],
        *,
        rate: float,
        threads: int = 3,
        allowed: int | None = None,
    ) -> None:
        self.provider = provider
        self.calls = calls
        self.rate = rate
        self.threads = threads
        self.answers: Counter[int] = Counter()
        self._allowed = len(calls) if allowed is None else allowed
        self._changed = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._next = 0
        self._last = 0.0

    def start(self) -> "Traffic":
        self._last = time.monotonic()
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"traffic-{n}")
            thread.start()
            self._workers.append(thread)
        return self

    def allow(self, count: int | None = None) -> None:
        with self._changed:
            self._allowed = len(self.calls) if count is None else count
            self._changed.notify_all()

    @property
    def posted(self) -> int:
        with self._changed:
            return min(self._next, len(self.calls))

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(
                    lambda: self._next < self._allowed or self._next >= len(self.calls)
                )
                index = self._next
                if index >= len(self.calls):
                    return
                self._next += 1
                # One call every 1/rate seconds at most.
                due = max(time.monotonic(), self._last + 1 / self.rate)
                self._last = due
            time.sleep(max(0.0, due - time.monotonic()))
            answers = self.provider.one_call(self.calls[index])
            with self._changed:
                self.answers.update(answers)

    def join(self, timeout: float = 300) -> None:
        self.allow()
        for thread in self._workers:
            thread.join(timeout)

    @property
    def done(self) -> bool:
        return not any(thread.is_alive() for thread in self._workers)


class DeliveryReporter:
    """Twilio's status callbacks: every message the stand-in took is reported
    sent, then delivered, as the handset gets it."""

    def __init__(self, twilio: TwilioStandIn, provider: Provider) -> None:
        self.twilio = twilio
        self.provider = provider
        self.reported: set[str] = set()
        self.refused: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delivery-reports")

    def start(self) -> "DeliveryReporter":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            self.report_new()

    def report_new(self) -> None:
        for message in self.twilio.messages:
            if message["sid"] in self.reported:
                continue
            for status in ("sent", "delivered"):
                answer = self.provider.sms_status(message, status)
                if answer != 200:
                    self.refused.append((message["sid"], answer))
            self.reported.add(message["sid"])

    @property
    def caught_up(self) -> bool:
        return len(self.reported) == len(self.twilio.messages)


# --- The processes ----------------------------------------------------------


def process_database_url() -> str:
    db = connection.settings_dict
    return (
        f"postgres://{db['USER']}@{db['HOST'] or LOOPBACK}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


def process_run_id() -> str:
    return settings.CELERY_TASK_DEFAULT_QUEUE.removeprefix("afterhours-test-")


@dataclass
class FaultRun:
    """Redis, web, workers and beat of one fault run, and the stand-ins."""

    workdir: Path
    redis: RedisServer
    twilio: TwilioStandIn
    airtable: AirtableStandIn
    env: dict[str, str]
    concurrency: int = 4
    web_port: int = field(default_factory=free_port)
    web: subprocess.Popen | None = None
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    beat: subprocess.Popen | None = None
    kills: int = 0
    # Workers that died on their own and were started again, as a process
    # supervisor does in production (see `supervise`).
    crashes: int = 0
    clock_steps: int = 0
    _worker_serial: int = 0
    _ready: set[str] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.web_port}"

    @property
    def mail_dir(self) -> Path:
        return Path(self.env["AFTERHOURS_TEST_MAIL_DIR"])

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        with (self.workdir / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def start_web(self, *, workers: int = 2) -> None:
        """gunicorn with the app loaded before it forks, answering once up."""
        self.web = self._spawn(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "afterhours.wsgi:application",
                f"--bind={LOOPBACK}:{self.web_port}",
                f"--workers={workers}",
                "--preload",
                "--timeout=120",
                "--log-level=warning",
            ],
        )

        def answers() -> bool:
            try:
                url = f"{self.base_url}/webhooks/twilio/voice/"
                return requests.get(url, timeout=5).status_code == 405
            except requests.RequestException:
                return False

        wait_for(answers, what="gunicorn answering", timeout=120, interval=0.5)

    def start_worker(self, name: str | None = None) -> str:
        """A Celery worker process; returns its name (see `worker_ready`)."""
        if name is None:
            self._worker_serial += 1
            name = f"w{self._worker_serial}"
        self.workers[name] = self._spawn(
            f"worker-{name}",
            # INFO: the worker says when it is ready.
            celery_worker_command(
                name=name, concurrency=self.concurrency, loglevel="INFO"
            ),
        )
        return name

    def worker_ready(self, name: str) -> bool:
        """The worker has connected to Redis and is taking tasks."""
        if name in self._ready:
            return True
        log = self.workdir / f"worker-{name}.log"
        if not log.exists():
            return False
        with log.open(errors="replace") as lines:
            if any(f"{name}@" in line and " ready." in line for line in lines):
                self._ready.add(name)
                return True
        return False

    def wait_workers_ready(self, timeout: float = 120) -> None:
        wait_for(
            lambda: all(self.worker_ready(name) for name in self.workers),
            what=f"workers {sorted(self.workers)} ready",
            timeout=timeout,
            interval=0.2,
        )

    def ready_workers(self) -> list[str]:
        self.supervise()
        return sorted(name for name in self.workers if self.worker_ready(name))

    def supervise(self) -> None:
        """Start again any worker process that exited on its own.

        As bin/supervise.py does for `make run`, and a process supervisor
        in production. Runs count the deaths (`crashes`): celery 5.7.0 ended
        a worker holding an unacked task when Redis went away (its consumer
        closed the connection again after collect(), AttributeError in
        kombu's redis _connparams), hence the pin to 5.6.3, and the Redis
        run asserts no worker dies.
        """
        for name, process in list(self.workers.items()):
            if process.poll() is not None:
                del self.workers[name]
                self.crashes += 1
                self.start_worker()

    def kill_random_worker(self, rng: random.Random) -> str:
        """SIGKILL a worker that is taking tasks, and start its replacement.

        Waits until another worker is taking tasks too, so the queue is
        never left to a worker that is still starting.
        """
        wait_for(
            lambda: len(self.ready_workers()) >= 2,
            what="two workers taking tasks",
            timeout=120,
        )
        victim = rng.choice(self.ready_workers())
        self.kill_worker(victim)
        self.start_worker()
        return victim

    def kill_worker(self, name: str) -> None:
        """SIGKILL: no warm shutdown, its tasks die where they stand."""
        process = self.workers.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        self.kills += 1

    def start_beat(self) -> None:
        self.beat = self._spawn(
            "beat",
            celery_beat_command(schedule=self.workdir / "beat-schedule"),
        )

    def stop_beat(self, *, kill: bool = False) -> None:
        if self.beat is None:
            return
        if kill:
            self.beat.send_signal(signal.SIGKILL)
            self.beat.wait(timeout=30)
        else:
            stop_process(self.beat)
        self.beat = None

    def stop(self) -> None:
        """Everything down within about 15 s, whatever state it is in."""
        stop_processes([self.beat, *self.workers.values(), self.web])
        self.workers.clear()
        self.redis.stop()

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for log in sorted(self.workdir.glob("*.log")):
            text = [
                line
                for line in log.read_text(errors="replace").splitlines()
                if "WARNING" in line or "ERROR" in line or "Error" in line
            ][-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(out)

    # --- settling -----------------------------------------------------------

    def activity(self) -> tuple:
        """A fingerprint of everything that moves; equal twice means idle."""
        return (
            _counts(WebhookEvent, "status", "attempts"),
            _counts(Notification, "state", "attempts"),
            _counts(Call, "airtable_state", "airtable_attempts"),
            len(self.twilio.requests),
            len(self.airtable.requests()),
            len(list(self.mail_dir.glob("*.log"))),
        )

    def in_flight(self) -> bool:
        """Work under way: tasks waiting in the queue, or a stand-in request
        that has arrived and not been answered."""
        if self.queued():
            return True
        if any(request.status == 0 for request in self.twilio.requests):
            return True
        return self.airtable.started() > len(self.airtable.requests())

    def held_by_redis(self) -> int:
        """Tasks Redis holds for this run: queued, or taken by a worker and
        not acknowledged yet (running, or waiting for their countdown)."""
        prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
        client = redis.Redis(host=LOOPBACK, port=self.redis.port)
        return self.queued() + client.hlen(f"{prefix}unacked")

    def queued(self) -> int:
        """Tasks waiting in this run's queue (0 while Redis is down)."""
        queue = settings.CELERY_TASK_DEFAULT_QUEUE
        prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
        try:
            return redis.Redis(host=LOOPBACK, port=self.redis.port).llen(
                f"{prefix}{queue}"
            )
        except redis.RedisError:
            return 0

    def advance_clock(self, step: timedelta = CLOCK_STEP) -> None:
        """Move the pipeline's bookkeeping times back by `step`, as if that
        much time had passed. The facts of a call (its start and end) keep
        their times."""
        self.clock_steps += 1
        with connection.cursor() as cursor:
            for table, columns in _CLOCK_COLUMNS.items():
                sets = ", ".join(f"{c} = {c} - %s" for c in columns)
                cursor.execute(f"UPDATE {table} SET {sets}", [step] * len(columns))

    def settle(
        self,
        *,
        done: Callable[[], bool],
        timeout: float,
        reporter: "DeliveryReporter | None" = None,
    ) -> None:
        """Wait until `done()`, moving the clock a step whenever idle: the
        queue empty, no stand-in request open, every SMS reported, and no
        row changed for QUIET_SECONDS."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while not done():
            self.supervise()
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the pipeline did not settle in {timeout:.0f}s "
                    f"({self.clock_steps} clock steps): {unfinished_work()}\n"
                    f"{self.log_tail()}"
                )
            now = time.monotonic()
            fingerprint = self.activity()
            idle = reporter is None or reporter.caught_up
            if fingerprint != last or self.in_flight() or not idle:
                last, since = fingerprint, now
            elif now - since >= QUIET_SECONDS:
                self.advance_clock()
                last, since = None, now
            time.sleep(0.3)


# Bookkeeping times the sweeps read: when a row arrived, is due, was sent.
_CLOCK_COLUMNS = {
    WebhookEvent._meta.db_table: ("received_at",),
    Notification._meta.db_table: (
        "created_at",
        "next_attempt_at",
        "sent_at",
        "delivered_at",
        "fallback_checked_at",
    ),
    Call._meta.db_table: (
        "created_at",
        "airtable_next_attempt_at",
        "airtable_leased_until",
    ),
}


def _counts(model, name: str, total: str) -> tuple:
    from django.db.models import Count, Sum

    rows = model.objects.values(name).annotate(n=Count("pk"), t=Sum(total))
    return tuple(sorted((row[name], row["n"], row["t"]) for row in rows))


@contextmanager
def fault_run(
    workdir: Path,
    *,
    workers: int = 2,
    concurrency: int = 4,
    beat: bool = True,
    summary_wait: int = 20,
    sweep_seconds: int = 2,
    twilio: TwilioStandIn | None = None,
    airtable: AirtableStandIn | None = None,
) -> Iterator[FaultRun]:
    """Everything started, and everything stopped again afterwards.

    Needs a transactional test: the processes read only committed rows.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    mail_dir = workdir / "mail"
    mail_dir.mkdir(exist_ok=True)
    with (
        twilio or TwilioStandIn() as twilio_standin,
        airtable or AirtableStandIn() as airtable_standin,
    ):
        server = RedisServer(workdir=workdir / "redis").start()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "afterhours.settings.test",
            "AFTERHOURS_TEST_RUN": process_run_id(),
            "DATABASE_URL": process_database_url(),
            "CELERY_BROKER_URL": server.url,
            "TWILIO_API_BASE_URL": twilio_standin.url,
            "AIRTABLE_API_BASE_URL": airtable_standin.url,
            "AIRTABLE_API_KEY": airtable_standin.api_key,
            "AFTERHOURS_TEST_MAIL_DIR": str(mail_dir),
            "AFTERHOURS_TEST_SUMMARY_WAIT_SECONDS": str(summary_wait),
            "AFTERHOURS_TEST_SWEEP_SECONDS": str(sweep_seconds),
            # One sender number carries the whole run: a short code's rate.
            "TWILIO_SENDER_RATE_PER_SECOND": "50",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        run = FaultRun(
            workdir=workdir,
            redis=server,
            twilio=twilio_standin,
            airtable=airtable_standin,
            env=env,
            concurrency=concurrency,
        )
        try:
            run.start_web()
            for _ in range(workers):
                run.start_worker()
            if beat:
                run.start_beat()
            yield run
        finally:
            run.stop()
            close_other_connections()


def close_other_connections() -> None:
    """End the sessions the processes left, so the database can be dropped."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


# --- What must hold afterwards ----------------------------------------------


def unfinished_work() -> dict[str, int]:
    """Rows the pipeline still owes something; all zero when it is done."""
    return {
        "inbox pending": WebhookEvent.objects.filter(
            status=WebhookEvent.Status.PENDING
        ).count(),
        "outbox unfinished": Notification.objects.filter(
            state__in=UNFINISHED_STATES
        ).count(),
        "SMS sent, not confirmed": Notification.objects.filter(
            state=State.SENT, channel=Notification.Channel.SMS
        ).count(),
        "calls not synced": Call.objects.exclude(
            airtable_state=Call.SyncState.SYNCED
        ).count(),
    }


def sent_emails(mail_dir: Path) -> list[email.message.Message]:
    """Every message the file backend wrote, as parsed email."""
    messages = []
    for path in sorted(mail_dir.glob("*.log")):
        for chunk in path.read_text().split("\n" + "-" * 79 + "\n"):
            if chunk.strip():
                messages.append(email.message_from_string(chunk))
    return messages


def email_text(message: email.message.Message) -> str:
    return message.get_payload(decode=True).decode(
        message.get_content_charset() or "utf-8"
    )


@dataclass
class Outcome:
    """What the run left in PostgreSQL, at the stand-ins and in the mail."""

    problems: list[str]
    calls: int
    sms: int
    emails: int

    def __str__(self) -> str:
        head = f"{self.calls} calls, {self.sms} SMS, {self.emails} emails"
        return "\n".join([head, *self.problems[:40]])


def check_every_call_once(
    run: FaultRun, calls: list[CallPlan], *, base_ids: dict[str, str]
) -> Outcome:
    """Each call once in PostgreSQL and in Airtable; each on-call notification
    delivered once, by SMS or by its email fallback; the summary reached
    on-call for every call; nothing left stuck.

    `base_ids` maps each phone line to its business's Airtable base.
    """
    problems: list[str] = []
    for what, count in unfinished_work().items():
        if count:
            problems.append(f"{what}: {count}")

    # PostgreSQL: every call, once (the id is unique), with its summary.
    stored = {call.provider_call_id: call for call in Call.objects.all()}
    planned = {plan.sid: plan for plan in calls}
    if set(stored) != set(planned):
        problems.append(
            f"calls in PostgreSQL: {len(stored)}, planned {len(planned)}, "
            f"missing {sorted(set(planned) - set(stored))[:5]}"
        )
    for sid, call in stored.items():
        plan = planned.get(sid)
        if plan and (call.status, call.summary) != ("completed", plan.summary):
            problems.append(f"call {sid}: {call.status}, summary {call.summary!r}")

    # Airtable: one record per call, holding what PostgreSQL holds.
    records: dict[str, list[dict]] = {}
    for base_id in set(base_ids.values()):
        for record in run.airtable.records(base_id, settings.AIRTABLE_CALLS_TABLE):
            records.setdefault(record["fields"].get("Call ID"), []).append(record)
        if run.airtable.over_rate_429s(base_id):
            problems.append(
                f"Airtable base {base_id}: {run.airtable.over_rate_429s(base_id)} "
                "429s for more than 5 requests a second"
            )
    for sid, plan in planned.items():
        found = records.get(sid, [])
        if len(found) != 1:
            problems.append(f"call {sid}: {len(found)} Airtable records")
        elif (
            found[0]["fields"].get("Summary", ""),
            found[0]["fields"].get("Status"),
        ) != (plan.summary, "completed"):
            problems.append(f"call {sid}: Airtable record is stale: {found[0]}")
    unknown = set(records) - set(planned)
    if unknown:
        problems.append(f"Airtable records of unknown calls: {sorted(unknown)[:5]}")

    # SMS: every message Twilio took belongs to one delivered notification.
    messages = run.twilio.messages
    by_sid = {message["sid"]: message for message in messages}
    twice = [
        key
        for key, n in Counter((m["to"], m["body"]) for m in messages).items()
        if n > 1
    ]
    if twice:
        problems.append(f"{len(twice)} SMS taken by Twilio more than once: {twice[:3]}")
    summary_sms = Notification.objects.filter(
        reason=Notification.Reason.CALL_SUMMARY, channel=Notification.Channel.SMS
    ).select_related("call")
    claimed_sids: set[str] = set()
    delivered_texts: dict[str, list[str]] = {}
    emails = sent_emails(run.mail_dir)
    mail_by_key = Counter((m["To"], m["Subject"], email_text(m)) for m in emails)
    for sms in summary_sms:
        fallbacks = list(Notification.objects.filter(fallback_of=sms))
        if sms.state == State.DELIVERED:
            if sms.provider_message_id not in by_sid:
                problems.append(f"SMS #{sms.pk} delivered but unknown to Twilio")
            claimed_sids.add(sms.provider_message_id)
            # A fallback owed and then cancelled (the SMS was confirmed
            # first) never left; only a sent one is a second copy.
            if any(f.state != State.CANCELLED for f in fallbacks):
                problems.append(f"SMS #{sms.pk} delivered and also fell back to email")
            delivered_texts.setdefault(sms.call.provider_call_id, []).append(sms.body)
            continue
        if sms.state not in (State.UNDELIVERABLE, State.SUPPRESSED):
            problems.append(f"SMS #{sms.pk} ended {sms.state}")
            continue
        if len(fallbacks) != 1 or fallbacks[0].state != State.SENT:
            problems.append(
                f"SMS #{sms.pk} {sms.state}: fallbacks "
                f"{[(f.pk, f.state) for f in fallbacks]}"
            )
            continue
        fallback = fallbacks[0]
        copies = mail_by_key[(fallback.recipient, fallback.subject, fallback.body)]
        if copies != 1:
            problems.append(f"fallback email #{fallback.pk} was sent {copies} times")
        delivered_texts.setdefault(sms.call.provider_call_id, []).append(fallback.body)
    stray = set(by_sid) - claimed_sids
    if stray:
        problems.append(f"{len(stray)} SMS at Twilio that no notification claims")
    fallbacks_sent = Notification.objects.filter(
        fallback_of__isnull=False, state=State.SENT
    ).count()
    if len(emails) != fallbacks_sent:
        problems.append(f"{len(emails)} emails for {fallbacks_sent} fallbacks sent")

    # On-call heard of every call, with its summary when there was one.
    for sid, plan in planned.items():
        texts = delivered_texts.get(sid, [])
        if not any((plan.summary or "Summary to follow.") in text for text in texts):
            problems.append(f"call {sid}: on-call never got its summary ({texts})")

    return Outcome(
        problems=problems, calls=len(stored), sms=len(messages), emails=len(emails)
    )
