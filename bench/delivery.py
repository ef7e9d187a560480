"""Webhook to SMS through the whole call pipeline, at a steady rate.

Starts everything on this machine, on loopback: a redis-server of its own on
a free port, gunicorn serving the product on PostgreSQL (its own database,
reset first, like bench/ingest.py), Celery workers and beat on that Redis,
and the Twilio and Airtable stand-ins as threads of this process. Then, for
`--seconds`, it starts `--rate` calls a second: each is a signed Twilio
voice "completed" callback followed by the provider's signed end-of-call
report, so the SMS is not held waiting for it (`--no-summary`: no report,
and the SMS goes on completion, CALL_SUMMARY_WAIT_SECONDS=0).

Prints, per call, the time from the completed callback leaving the client
to the SMS request reaching the Twilio stand-in (p50/p95/p99), the
throughput achieved, and the Airtable stand-in's 429 count; then whether
each goal is met: p95 under 1 s at 20 calls a second for 60 s, no 429 from
Airtable. Stops everything it started, whatever happens.

All SMS go from one sender number, and the outbox keeps each sender number
within its send rate (TWILIO_SENDER_RATE_PER_SECOND, default 1: a US long
code). 20 calls a second need a sender that may send that many: the run
uses `--sender-rate` (default 30, a short code or a messaging service).

    .venv/bin/python bench/delivery.py [--rate 20] [--seconds 60]
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Its own database, so bench/ingest.py and this never reset each other's.
os.environ.setdefault(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/afterhours_bench_delivery"
)
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from accounts.models import Business, PhoneLine  # noqa: E402
from bench.ingest import free_port, reset_database  # noqa: E402
from intake.call_summary import call_summary_signature  # noqa: E402
from intake.models import Call  # noqa: E402
from standins.airtable import AirtableStandIn  # noqa: E402
from standins.twilio import TwilioStandIn  # noqa: E402
from tests.faults.harness import (  # noqa: E402
    RedisServer,
    celery_beat_command,
    celery_worker_command,
    stop_process,
    wait_for,
)

ACCOUNT_SID = "AC" + "0" * 32
SENDER = "+15005550006"
SUMMARY_SECRET = "bench-call-summary-secret"
CALLER = re.compile(r"call from (\+\d+)")
GOAL_P95_SECONDS = 1.0


class TimedTwilio(TwilioStandIn):
    """The Twilio stand-in, noting when each SMS request arrived."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.arrivals: dict[str, float] = {}

    def handle(self, method: str, path: str, auth: str, form: dict) -> tuple:
        arrived = time.monotonic()
        if method == "POST":
            found = CALLER.search(form.get("Body", ""))
            if found:
                self.arrivals.setdefault(found[1], arrived)
        return super().handle(method, path, auth, form)


class Caller:
    """The call provider and Twilio, posting one call's webhooks."""

    def __init__(self, base_url: str, *, summary: bool) -> None:
        self.base_url = base_url
        self.summary = summary
        self.validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
        self.local = threading.local()
        self.sent: dict[str, float] = {}
        self.failures: list[str] = []

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def call(self, n: int, line: str) -> None:
        caller = f"+1617555{n:04d}"
        sid = f"CA{uuid.uuid4().hex}"
        params = {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": sid,
            "CallStatus": "completed",
            "CallDuration": "95",
            "CallbackSource": "call-progress-events",
            "Direction": "inbound",
            "From": caller,
            "To": line,
            "SequenceNumber": "3",
            "Timestamp": format_datetime(datetime.now(UTC)),
        }
        url = f"{self.base_url}/webhooks/twilio/voice/"
        signature = self.validator.compute_signature(url, params)
        self.sent[caller] = time.monotonic()
        self._post(url, data=params, headers={"X-Twilio-Signature": signature})
        if not self.summary:
            return
        body = json.dumps(
            {
                "call_id": sid,
                "summary": f"Bench call {n}: water heater leaking, wants a callback.",
                "urgency": "high",
            }
        ).encode()
        stamp = int(time.time())
        digest = call_summary_signature(
            secret=SUMMARY_SECRET, timestamp=stamp, body=body
        )
        self._post(
            f"{self.base_url}/webhooks/calls/summary/",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Afterhours-Signature": f"t={stamp},v1={digest}",
            },
        )

    def _post(self, url: str, **kwargs) -> None:
        try:
            response = self.session().post(url, timeout=10, **kwargs)
        except requests.RequestException as exc:
            self.failures.append(f"{url}: {type(exc).__name__}")
            return
        if response.status_code != 200:
            self.failures.append(f"{url}: HTTP {response.status_code}")


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU of these processes and their children (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    wanted, total = set(pids), 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) in wanted or int(fields[1]) in wanted:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def machine_busy_seconds() -> float:
    """CPU time every process on the machine has used since boot (Linux)."""
    jiffies = [int(x) for x in Path("/proc/stat").read_text().split()[1:11]]
    idle = jiffies[3] + jiffies[4]
    return (sum(jiffies[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="calls a second")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--no-summary", action="store_true")
    parser.add_argument("--sender-rate", type=int, default=30)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="Celery processes")
    parser.add_argument("--concurrency", type=int, default=8, help="threads each")
    args = parser.parse_args()
    total = int(args.rate * args.seconds)
    if total > 9999:
        raise SystemExit("at most 9999 calls a run (caller numbers are the key)")

    reset_database()
    for business in Business.objects.all():
        business.airtable_base_id = f"app{uuid.uuid4().hex[:14]}"
        business.save(update_fields=["airtable_base_id"])
    lines = sorted(PhoneLine.objects.values_list("number", flat=True))

    work = Path(tempfile.mkdtemp(prefix="afterhours-bench-delivery-"))
    processes: list[subprocess.Popen] = []
    twilio = TimedTwilio(auth_token=settings.TWILIO_AUTH_TOKEN)
    airtable = AirtableStandIn()
    redis_server = RedisServer(workdir=work / "redis")
    with twilio, airtable:
        try:
            redis_server.start()
            port = free_port()
            env = {
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "bench.settings",
                "BENCH_BROKER_URL": redis_server.url,
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_FROM_NUMBER": SENDER,
                "TWILIO_API_BASE_URL": twilio.url,
                "TWILIO_SENDER_RATE_PER_SECOND": str(args.sender_rate),
                "AIRTABLE_API_KEY": airtable.api_key,
                "AIRTABLE_API_BASE_URL": airtable.url,
                "CALL_SUMMARY_WEBHOOK_SECRET": SUMMARY_SECRET,
                "CALL_SUMMARY_WAIT_SECONDS": "0" if args.no_summary else "60",
            }

            def spawn(name: str, command: list[str]) -> None:
                with (work / f"{name}.log").open("ab") as log:
                    processes.append(
                        subprocess.Popen(
                            command, cwd=ROOT, env=env, stdout=log, stderr=log
                        )
                    )

            spawn(
                "web",
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "afterhours.wsgi:application",
                    f"--bind=127.0.0.1:{port}",
                    f"--workers={args.web_workers}",
                    "--preload",
                    "--log-level=warning",
                ],
            )
            for n in range(args.workers):
                spawn(
                    f"worker-{n}",
                    celery_worker_command(
                        name=f"bench{n}", concurrency=args.concurrency
                    ),
                )
            spawn("beat", celery_beat_command(schedule=work / "beat-schedule"))
            base_url = f"http://127.0.0.1:{port}"
            _wait_ready(base_url)
            groups = {
                "web": [processes[0].pid],
                "workers": [p.pid for p in processes[1:-1]],
                "beat": [processes[-1].pid],
            }
            results = _drive(base_url, twilio, airtable, lines, args, total, groups)
        finally:
            for process in reversed(processes):
                stop_process(process)
            redis_server.stop()
    _report(results, twilio, airtable, args, total, work)


def _wait_ready(base_url: str) -> None:
    """gunicorn answers; the warm-up calls then show the workers take tasks."""

    def web_answers() -> bool:
        try:
            url = f"{base_url}/webhooks/twilio/voice/"
            return requests.get(url, timeout=5).status_code == 405
        except requests.RequestException:
            return False

    wait_for(web_answers, what="gunicorn", timeout=120, interval=0.5)


def _drive(base_url, twilio, airtable, lines, args, total, groups) -> dict:
    caller = Caller(base_url, summary=not args.no_summary)
    # Warm up: each gunicorn worker and each worker thread opens its
    # connections on its first request or task; not measured.
    with ThreadPoolExecutor(max_workers=4) as pool:
        for n in range(args.web_workers * 4):
            pool.submit(caller.call, 9999 - n, lines[n % len(lines)])
    wait_for(
        lambda: len(twilio.arrivals) >= args.web_workers * 4,
        what="the warm-up SMS",
        timeout=120,
    )
    caller.sent.clear()
    warm = set(twilio.arrivals)
    cpu_before = {name: cpu_seconds(pids) for name, pids in groups.items()}
    cpu_before["this process"] = time.process_time()
    cpu_before["machine"] = machine_busy_seconds()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        for n in range(total):
            due = started + n / args.rate
            time.sleep(max(0.0, due - time.monotonic()))
            pool.submit(caller.call, n, lines[n % len(lines)])
    posted = time.monotonic()
    # Stragglers get as long again as the run, at most 60 s.
    wait_for(
        lambda: (
            len(set(twilio.arrivals) - warm) >= total
            or time.monotonic() - posted > min(60, args.seconds)
        ),
        what="the SMS",
        timeout=args.seconds + 120,
        interval=0.2,
    )
    sms_done = time.monotonic()
    # Airtable is off the SMS path: it must still catch up, every call's
    # record holding its summary, soon after the last call.
    wait_for(
        lambda: (
            _airtable_up_to_date(airtable, summary=not args.no_summary)
            or time.monotonic() - sms_done > 60
        ),
        what="Airtable",
        timeout=120,
        interval=0.5,
    )
    airtable_done = time.monotonic()
    cpu = {name: cpu_seconds(pids) - cpu_before[name] for name, pids in groups.items()}
    cpu["this process"] = time.process_time() - cpu_before["this process"]
    # Everything else: PostgreSQL, Redis, and whatever else the machine ran.
    cpu["rest of the machine"] = (
        machine_busy_seconds() - cpu_before["machine"] - sum(cpu.values())
    )
    return {
        "caller": caller,
        "started": started,
        "posted": posted,
        "warm": warm,
        "cpu": cpu,
        "wall": time.monotonic() - started,
        "airtable_lag": airtable_done - max(posted, sms_done),
    }


def _report(results, twilio, airtable, args, total, work) -> None:
    caller = results["caller"]
    arrivals = {k: v for k, v in twilio.arrivals.items() if k not in results["warm"]}
    latencies = sorted(
        arrivals[number] - sent
        for number, sent in caller.sent.items()
        if number in arrivals
    )
    missing = total - len(latencies)
    driven = results["posted"] - results["started"]
    last = max(arrivals.values(), default=results["started"])
    throughput = len(latencies) / max(last - results["started"], 1e-9)
    too_many = [r for r in airtable.requests() if r.status == 429]
    p50, p95, p99 = (percentile(latencies, p) for p in (50, 95, 99))

    mode = (
        "no report, SMS on completion"
        if args.no_summary
        else ("completed callback + end-of-call report")
    )
    print(
        f"\n{total} calls at {args.rate:g}/s for {args.seconds}s ({mode}); "
        f"gunicorn {args.web_workers} workers, Celery {args.workers} x "
        f"{args.concurrency} threads + beat, sender rate {args.sender_rate}/s, "
        f"{os.cpu_count()} cores"
    )
    print(f"calls posted in {driven:.1f}s ({total / driven:.1f}/s)")
    print(
        f"SMS at the Twilio stand-in: {len(latencies)} of {total} ({missing} missing)"
    )
    print(f"throughput: {throughput:.1f} SMS/s from the first call to the last SMS")
    print(
        f"webhook -> SMS request: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, max {max(latencies, default=0) * 1000:.0f} ms"
    )
    cpu = results["cpu"]
    print(
        f"CPU over {results['wall']:.0f}s: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in cpu.items())
        + f" ({sum(cpu.values()) / results['wall']:.2f} of {os.cpu_count()} "
        f"cores busy; Celery workers {cpu['workers'] / total * 1000:.0f} ms a call)"
    )
    calls = Call.objects.count()
    records = [r for b in _bases() for r in airtable.records(b, "Calls")]
    up_to_date = _airtable_up_to_date(airtable, summary=not args.no_summary)
    print(
        f"Airtable: {len(airtable.requests())} requests, {len(too_many)} answered 429; "
        f"{len(records)} records for {calls} calls "
        f"({len({r['fields']['Call ID'] for r in records})} distinct), "
        f"{'all' if up_to_date else 'NOT all'} up to date "
        f"{results['airtable_lag']:.1f}s after the last SMS"
    )
    if caller.failures:
        print(
            f"webhooks not answered 200: {len(caller.failures)}: {caller.failures[:3]}"
        )
    met_p95 = (
        not missing
        and p95 < GOAL_P95_SECONDS
        and args.rate >= 20
        and args.seconds >= 60
    )
    print(
        f"goal p95 < 1 s at 20 calls/s for 60 s: {'met' if met_p95 else 'NOT met'}"
        + ("" if args.rate >= 20 and args.seconds >= 60 else " (run was smaller)")
    )
    print(f"goal no 429 from Airtable: {'met' if not too_many else 'NOT met'}")
    print(f"logs: {work}")


def _airtable_up_to_date(airtable, *, summary: bool) -> bool:
    """Every call has one record, with the call's final status (and summary)."""
    expected = {
        sid: (status, text if summary else "")
        for sid, status, text in Call.objects.values_list(
            "provider_call_id", "status", "summary"
        )
    }
    found = {}
    for base_id in _bases():
        for record in airtable.records(base_id, "Calls"):
            fields = record["fields"]
            key = fields["Call ID"]
            if key in found:
                return False
            text = fields.get("Summary", "") if summary else ""
            found[key] = (fields.get("Status"), text)
    return found == expected


def _bases() -> list[str]:
    return list(Business.objects.values_list("airtable_base_id", flat=True))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
