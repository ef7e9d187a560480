"""How well and how fast triage reads support email.

Runs the triage test set (tests/tickets/triage_set/) and the seven shared
cases (tests/fixtures/triage/) through the service's own order: parse the
raw message, read the facts, match the business, read the facts again in
its zone, triage. Prints:

- the share exactly right (business, priority, escalation tags and missing
  facts all as expected.json says), and per field;
- the P0 recall (expected P0 messages triaged P0);
- messages per second on one core for the pure triage path (extract_facts
  twice and triage, business already matched), for the same with business
  matching (PostgreSQL queries), and for parsing the raw email alone. The
  process is pinned to one core; the rate per CPU second of the process is
  what the goal is judged on, since other work on a shared machine lowers
  the rate per wall second (printed beside it, with the load average).

Goals: every P0 caught, at least 95% exact, at least 200 messages/s on the
pure path. Uses the bench settings and their database (`afterhours_bench`),
migrated and given the businesses of tests/fixtures/businesses.json; it
drops nothing.

    .venv/bin/python bench/triage.py [--rounds 20] [--misses]
"""

import argparse
import datetime as dt
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from accounts.models import Business  # noqa: E402
from accounts.services import business_import  # noqa: E402
from intake.email import ParsedEmail, parse_email  # noqa: E402
from tickets import triage as triage_module  # noqa: E402
from tickets.selectors import business_for_sender  # noqa: E402
from tickets.triage import extract_facts, triage  # noqa: E402

SETS = [
    ROOT / "tests" / "fixtures" / "triage",
    ROOT / "tests" / "tickets" / "triage_set",
]
BUSINESSES = ROOT / "tests" / "fixtures" / "businesses.json"
GOAL_EXACT = 0.95
GOAL_RATE = 200.0


@dataclass
class Case:
    name: str
    raw: bytes
    expected: dict
    parsed: ParsedEmail | None = None
    business: Business | None = None


def ensure_database() -> None:
    """The bench database exists, is migrated and holds the businesses."""
    import psycopg

    name = settings.DATABASES["default"]["NAME"]
    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        dbname="postgres",
        autocommit=True,
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0)
    business_import(records=json.loads(BUSINESSES.read_text()))


def load_cases() -> list[Case]:
    cases = []
    for directory in SETS:
        for expected in json.loads((directory / "expected.json").read_text()):
            raw = (directory / expected["file"]).read_bytes()
            cases.append(Case(f"{directory.name}/{expected['file']}", raw, expected))
    return cases


def subject_of(parsed: ParsedEmail) -> str:
    # The ticket's subject: our reference tags taken out, as the service does.
    import re

    prefix = re.escape(settings.TICKET_REFERENCE_PREFIX)
    return re.sub(rf"\s*\[{prefix}-\d+\]", "", parsed.subject).strip()


def received_of(parsed: ParsedEmail) -> dt.datetime:
    return parsed.date or dt.datetime.now(dt.UTC)


def match_business(parsed: ParsedEmail) -> tuple[Business | None, object]:
    received = received_of(parsed)
    first = extract_facts(
        subject=parsed.subject, body=parsed.text, received_at=received, zone=None
    )
    business = business_for_sender(
        from_address=parsed.from_address,
        text=f"{parsed.subject}\n{parsed.text}",
        numbers=list(first.phones),
    )
    return business, first


def lines_of(business: Business | None) -> tuple[str, ...]:
    if business is None:
        return ()
    return tuple(business.phone_lines.values_list("number", flat=True))


def triage_one(parsed: ParsedEmail, business, lines, first=None):
    """The pure path: facts (twice when the business is known) and triage."""
    received = received_of(parsed)
    if first is None:
        first = extract_facts(
            subject=parsed.subject, body=parsed.text, received_at=received, zone=None
        )
    facts = first
    if business is not None:
        facts = extract_facts(
            subject=parsed.subject,
            body=parsed.text,
            received_at=received,
            zone=business.zone,
            business_lines=lines,
        )
    result = triage(
        subject=subject_of(parsed),
        body=parsed.text,
        facts=facts,
        business=business,
        received_at=received,
        matching_reports=1,
    )
    return facts, result


def cold_caches() -> None:
    """Forget what the previous message taught the module's caches."""
    triage_module._prepare_cached.cache_clear()
    triage_module._parse_candidate.cache_clear()


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


@dataclass
class Rate:
    cpu: float  # messages per CPU second of this process: one core's rate
    wall: float  # messages per second of wall time, lower on a busy machine


def measure(run, rounds: int) -> Rate:
    count = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        count += run()
    return Rate(
        cpu=rate(count, time.process_time() - cpu),
        wall=rate(count, time.perf_counter() - wall),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--misses", action="store_true", help="show each miss")
    options = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    ensure_database()
    cases = load_cases()

    # Correctness, once per message.
    exact = 0
    fields = {"business": 0, "priority": 0, "escalations": 0, "missing": 0}
    p0_expected = p0_caught = 0
    misses = []
    for case in cases:
        case.parsed = parse_email(case.raw)
        case.business, first = match_business(case.parsed)
        lines = lines_of(case.business)
        facts, result = triage_one(case.parsed, case.business, lines, first)
        got = {
            "business": case.business.name if case.business else None,
            "priority": result.priority,
            "escalations": sorted(result.escalations),
            "missing": facts.missing(),
        }
        right = {key: got[key] == case.expected[key] for key in fields}
        for key, ok in right.items():
            fields[key] += ok
        if all(right.values()):
            exact += 1
        else:
            misses.append((case, got, result))
        if case.expected["priority"] == "P0":
            p0_expected += 1
            p0_caught += result.priority == "P0"

    # Speed: the pure path, business already matched, caches cold per message.
    prepared = [(c.parsed, c.business, lines_of(c.business)) for c in cases]

    def pure() -> int:
        for parsed, business, lines in prepared:
            cold_caches()
            triage_one(parsed, business, lines)
        return len(prepared)

    def matched() -> int:
        for case in cases:
            cold_caches()
            business, first = match_business(case.parsed)
            triage_one(case.parsed, business, lines_of(business), first)
        return len(cases)

    def parsing() -> int:
        for case in cases:
            parse_email(case.raw)
        return len(cases)

    pure_rate = measure(pure, options.rounds)
    matched_rate = measure(matched, max(1, options.rounds // 4))
    parse_rate = measure(parsing, options.rounds)

    total = len(cases)
    share = exact / total
    recall = p0_caught / p0_expected if p0_expected else 1.0
    print(f"messages: {total} ({p0_expected} expected P0)")
    print(f"exactly right: {exact}/{total} = {share:.1%}")
    for key, right in fields.items():
        print(f"  {key:<12} {right}/{total} = {right / total:.1%}")
    print(f"P0 recall: {p0_caught}/{p0_expected} = {recall:.1%}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"speed on one core (per CPU second; per wall second, load {load:.1f} "
        f"on {os.cpu_count()} cores):"
    )
    for label, measured in (
        ("pure triage path (extract_facts + triage)", pure_rate),
        ("with business matching (PostgreSQL queries)", matched_rate),
        ("email parse alone (intake.email.parse_email)", parse_rate),
    ):
        print(
            f"  {label}: {measured.cpu:,.0f} msg/s CPU, {measured.wall:,.0f} msg/s wall"
        )
    goals = [
        ("every P0 caught", recall == 1.0),
        (f"at least {GOAL_EXACT:.0%} exact", share >= GOAL_EXACT),
        (
            f"at least {GOAL_RATE:.0f} msg/s on one core (pure path, CPU time)",
            pure_rate.cpu >= GOAL_RATE,
        ),
    ]
    for goal, met in goals:
        print(f"goal {goal}: {'met' if met else 'NOT met'}")
    if options.misses:
        for case, got, result in misses:
            print(f"\nMISS {case.name}")
            for key in fields:
                if got[key] != case.expected[key]:
                    print(f"  {key}: got {got[key]!r}, expected {case.expected[key]!r}")
            print(f"  reasons: {result.reasons}")
    return 0 if all(met for _, met in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
