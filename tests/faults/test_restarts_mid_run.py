"""Redis, then beat, restarted while calls come in.

Redis keeps nothing on disk here, so its restart loses every task it held
(queued, reserved by a worker, waiting for a countdown); the webhooks kept
arriving meanwhile and were stored in the inbox. Beat is killed and started
again while some SMS are held for end-of-call reports that never come, so
only the outbox sweep can let them go. Afterwards every call is in
PostgreSQL and in Airtable once, every on-call notification was delivered
once, by SMS or by its email fallback, and nothing is stuck.
"""

import random
import time

import pytest

from tests.faults.conftest import opt_out
from tests.faults.harness import (
    DeliveryReporter,
    Provider,
    Traffic,
    check_every_call_once,
    fault_run,
    plan_calls,
    unfinished_work,
)

pytestmark = pytest.mark.slow

CALLS = 60
RATE = 4.0


def settled() -> bool:
    return not any(unfinished_work().values())


@pytest.mark.timeout(300)
def test_calls_survive_redis_restarted_mid_run(base_ids, transactional_db, tmp_path):
    seed = int(time.time())
    calls = plan_calls(CALLS, lines=sorted(base_ids), seed=seed)

    with fault_run(tmp_path, workers=2) as run:
        opt_out(run.twilio)
        provider = Provider(run.base_url)
        reporter = DeliveryReporter(run.twilio, provider).start()
        run.wait_workers_ready()
        traffic = Traffic(provider, calls, rate=RATE).start()
        try:
            time.sleep(CALLS / RATE / 2)
            held_when_lost = run.held_by_redis()
            run.redis.restart(down_for=3.0)
            traffic.join()
            run.settle(done=settled, timeout=200, reporter=reporter)
        finally:
            reporter.stop()
            traffic.join()
        outcome = check_every_call_once(run, calls, base_ids=base_ids)

    print(
        f"seed {seed}: {outcome}; Redis held {held_when_lost} tasks when it "
        f"went; {run.crashes} workers died with it and were started again; "
        f"{run.clock_steps} clock steps"
    )
    assert traffic.answers == {200: sum(c.webhooks for c in calls)}, traffic.answers
    assert not reporter.refused
    assert not outcome.problems, f"seed {seed}: {outcome}"
    assert run.crashes == 0, "a worker must ride out a Redis restart"


@pytest.mark.timeout(300)
def test_calls_survive_beat_restarted_mid_run(base_ids, transactional_db, tmp_path):
    seed = int(time.time())
    rng = random.Random(seed)
    # Every third call gets no end-of-call report: its SMS is held until
    # the outbox sweep (beat) lets it go with "Summary to follow."
    calls = plan_calls(CALLS, lines=sorted(base_ids), seed=seed, without_report=3)

    with fault_run(tmp_path, workers=2) as run:
        opt_out(run.twilio)
        provider = Provider(run.base_url)
        reporter = DeliveryReporter(run.twilio, provider).start()
        run.wait_workers_ready()
        traffic = Traffic(provider, calls, rate=RATE).start()
        try:
            time.sleep(rng.uniform(3.0, CALLS / RATE - 3.0))
            run.stop_beat(kill=True)
            time.sleep(5.0)
            run.start_beat()
            traffic.join()
            run.settle(done=settled, timeout=200, reporter=reporter)
        finally:
            reporter.stop()
            traffic.join()
        outcome = check_every_call_once(run, calls, base_ids=base_ids)

    print(f"seed {seed}: {outcome}; {run.clock_steps} clock steps")
    assert traffic.answers == {200: sum(c.webhooks for c in calls)}, traffic.answers
    assert not reporter.refused
    assert not outcome.problems, f"seed {seed}: {outcome}"
