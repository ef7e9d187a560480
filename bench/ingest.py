"""How much the voice webhook (verify, store, enqueue) costs next to bare views.

Serves the product with gunicorn on PostgreSQL (its own database) with Redis
as the broker, then drives three endpoints with wrk in one run:

- the signed Twilio voice status webhook, every request a new call event;
- a bare view that does one insert;
- a bare view that does nothing.

Prints requests/s and latency percentiles for each, and the ratios. Goal:
the webhook reaches at least 60% of the one-insert view, p99 under 100 ms.

    .venv/bin/python bench/ingest.py [--seconds 15] [--connections 8]
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

LUA = r"""
local lines = {}
local i = 0
function init(args)
  local path = args[1]
  if path ~= nil then
    for line in io.lines(path) do
      local tab = line:find("\t")
      lines[#lines + 1] = {line:sub(1, tab - 1), line:sub(tab + 1)}
    end
  end
end
function request()
  local headers = {}
  headers["Content-Type"] = "application/x-www-form-urlencoded"
  local body = "a=1"
  if #lines > 0 then
    i = i % #lines + 1
    headers["X-Twilio-Signature"] = lines[i][1]
    body = lines[i][2]
  end
  return wrk.format("POST", nil, headers, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d\n",
    summary.requests, summary.errors.status + summary.errors.timeout
    + summary.errors.connect + summary.errors.read + summary.errors.write,
    summary.errors.status))
  for _, p in pairs({50, 95, 99}) do
    io.write(string.format("P%d %.3f\n", p, latency:percentile(p) / 1000.0))
  end
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reset_database() -> None:
    name = settings.DATABASES["default"]["NAME"]
    admin = dict(settings.DATABASES["default"], NAME="postgres")
    import psycopg

    with psycopg.connect(
        host=admin["HOST"] or "127.0.0.1",
        port=admin["PORT"] or 5432,
        user=admin["USER"],
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0)
    call_command("import_businesses", str(ROOT / "samples" / "businesses.json"))


def signed_bodies(url: str, count: int, path: Path, first: int = 0) -> None:
    """One signed status callback per line: a new call for every request."""
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
    with path.open("w") as out:
        for n in range(first, first + count):
            params = {
                "AccountSid": "AC" + "0" * 32,
                "ApiVersion": "2010-04-01",
                "CallSid": f"CA{n:032x}",
                "CallStatus": "ringing",
                "CallbackSource": "call-progress-events",
                "Direction": "inbound",
                "From": "+16175550199",
                "To": "+16175550142",
                "SequenceNumber": "0",
                "Timestamp": "Tue, 08 Dec 2026 03:01:20 +0000",
            }
            signature = validator.compute_signature(url, params)
            out.write(f"{signature}\t{urlencode(params)}\n")


def wait_for(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start")


def run_wrk(url, script, data, seconds, connections) -> dict:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    if data:
        command += ["--", str(data)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    result = re.search(r"RESULT requests=(\d+) errors=(\d+) non2xx=(\d+)", out)
    figures["requests"], figures["errors"], figures["non2xx"] = map(
        int, result.groups()
    )
    for p in (50, 95, 99):
        figures[f"p{p}"] = float(re.search(rf"P{p} ([\d.]+)", out).group(1))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    if subprocess.run(["which", "wrk"], capture_output=True).returncode:
        raise SystemExit("wrk is needed: apt-get install -y wrk")

    reset_database()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    webhook_url = f"{base}/webhooks/twilio/voice/"
    work = Path(tempfile.mkdtemp(prefix="afterhours-bench-"))
    script, bodies = work / "post.lua", work / "bodies.tsv"
    warm_bodies = work / "warm-bodies.tsv"
    script.write_text(LUA)
    # More distinct events than the run can send, so none is a duplicate.
    signed_bodies(webhook_url, 4000 * args.seconds, bodies)
    signed_bodies(webhook_url, 20000, warm_bodies, first=0xF << 124)

    server = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            "afterhours.wsgi",
            f"--bind=127.0.0.1:{port}",
            f"--workers={args.workers}",
            "--log-level=warning",
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings"},
    )
    try:
        wait_for(port)
        results = {}
        # Warm every endpoint first: each gunicorn worker imports the
        # webhook's modules and opens its connections on its first request.
        for url, data in [
            (webhook_url, warm_bodies),
            (f"{base}/bench/insert/", None),
            (f"{base}/bench/noop/", None),
        ]:
            run_wrk(url, script, data, 2, args.connections)
        for name, url, data in [
            ("voice webhook", webhook_url, bodies),
            ("one-insert view", f"{base}/bench/insert/", None),
            ("no-op view", f"{base}/bench/noop/", None),
        ]:
            results[name] = run_wrk(url, script, data, args.seconds, args.connections)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        _purge_broker()

    print(
        f"\n{args.seconds}s per endpoint, {args.connections} connections, "
        f"gunicorn {args.workers} sync workers, {os.cpu_count()} cores\n"
    )
    print(
        f"{'endpoint':<18}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'non-2xx':>9}"
    )
    for name, r in results.items():
        print(
            f"{name:<18}{r['rps']:>9.0f}{r['p50']:>9.1f}{r['p95']:>9.1f}"
            f"{r['p99']:>9.1f}{r['non2xx'] + r['errors']:>9}"
        )
    webhook = results["voice webhook"]
    insert = results["one-insert view"]
    noop = results["no-op view"]
    to_insert = webhook["rps"] / insert["rps"]
    print(f"\nwebhook / one-insert: {to_insert:.0%}  (goal >= 60%)")
    print(f"webhook / no-op:      {webhook['rps'] / noop['rps']:.0%}")
    print(f"one-insert / no-op:   {insert['rps'] / noop['rps']:.0%}")
    print(f"webhook p99: {webhook['p99']:.1f} ms  (goal < 100 ms)")
    from intake.models import WebhookEvent

    stored = WebhookEvent.objects.filter(
        provider="twilio", event_id__startswith="CA0"
    ).count()
    print(f"webhook events stored: {stored} of {webhook['requests']} sent")


def _purge_broker() -> None:
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


if __name__ == "__main__":
    main()
