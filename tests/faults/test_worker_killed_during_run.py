"""The worker killed with SIGKILL 20 times at random while 300 calls come in.

Three worker processes share the queue. Each kill takes one that is taking
tasks down with no warm shutdown (its tasks die wherever they are, its
unacknowledged messages stay in Redis, out of reach) and a new one starts at
once. Afterwards every call is in PostgreSQL and in Airtable once, every
on-call notification was delivered once, by SMS or by its email fallback,
and nothing is stuck.
"""

import os
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

CALLS = int(os.environ.get("AFTERHOURS_FAULT_CALLS", 300))
KILLS = int(os.environ.get("AFTERHOURS_FAULT_KILLS", 20))
RATE = 6.0  # calls a second at most


@pytest.mark.timeout(480)
def test_300_calls_survive_20_worker_kills(base_ids, transactional_db, tmp_path):
    # Settling gives up in time for the processes to be stopped before the
    # test's own timeout.
    give_up = time.monotonic() + 400
    seed = int(time.time())
    rng = random.Random(seed)
    calls = plan_calls(CALLS, lines=sorted(base_ids), seed=seed)

    with fault_run(tmp_path, workers=3) as run:
        opt_out(run.twilio)
        provider = Provider(run.base_url)
        reporter = DeliveryReporter(run.twilio, provider).start()
        # The calls are spread over the kills, however long a worker takes
        # to start on this machine: some come in before each kill.
        traffic = Traffic(provider, calls, rate=RATE, allowed=0).start()
        try:
            for kill in range(KILLS):
                traffic.allow((kill + 1) * CALLS // (KILLS + 1))
                time.sleep(rng.uniform(0.3, 2.0))
                run.kill_random_worker(rng)
            calls_after_the_last_kill = CALLS - traffic.posted
            traffic.join()
            run.settle(
                done=lambda: not any(unfinished_work().values()),
                timeout=max(60.0, give_up - time.monotonic()),
                reporter=reporter,
            )
        finally:
            reporter.stop()
            traffic.join()
        outcome = check_every_call_once(run, calls, base_ids=base_ids)

    print(
        f"seed {seed}: {outcome}; {run.kills} kills, {run.clock_steps} clock "
        f"steps; {calls_after_the_last_kill} calls came after the last kill"
    )
    assert traffic.answers == {200: sum(c.webhooks for c in calls)}, traffic.answers
    assert not reporter.refused
    assert run.kills == KILLS
    assert not outcome.problems, f"seed {seed}: {outcome}"
