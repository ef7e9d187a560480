"""Shared case "Faults seen in the field" 5: the worker is killed with SIGKILL
while it writes a call record and sends its SMS.

Both stand-ins hold their answers: Airtable takes the upsert and writes the
record only after a while, Twilio takes the message and answers late. The
worker dies with both requests open, so it never learns that either
arrived. After a new worker starts, the work completes: the Airtable record
and the SMS each exist once.
"""

import time

import pytest
from django.conf import settings

from intake.models import Call
from notifications.models import Notification
from standins.airtable import AirtableStandIn
from standins.twilio import TwilioStandIn
from tests.faults.harness import (
    DeliveryReporter,
    Provider,
    check_every_call_once,
    fault_run,
    plan_calls,
    unfinished_work,
    wait_for,
)

pytestmark = pytest.mark.slow

HARBOR_LINE = "+16175550142"


@pytest.mark.timeout(240)
def test_call_record_and_sms_exist_once_after_the_worker_dies_writing_them(
    base_ids, transactional_db, tmp_path
):
    # The shared voice case: the call completes, no end-of-call report, so
    # one Airtable upsert and one SMS follow from one event.
    [call] = plan_calls(1, lines=[HARBOR_LINE], seed=int(time.time()), without_report=1)
    base_id = base_ids[HARBOR_LINE]
    twilio, airtable = TwilioStandIn(), AirtableStandIn()
    # The first request to each is held open: the worker is killed in it.
    twilio.slow_next(1, seconds=60, after_accept=True)
    airtable.slow_next(1, seconds=8)

    with fault_run(
        tmp_path, workers=1, summary_wait=0, twilio=twilio, airtable=airtable
    ) as run:
        provider = Provider(run.base_url)
        reporter = DeliveryReporter(twilio, provider).start()
        try:
            assert provider.voice_status(call, status="completed", sequence=3) == 200
            wait_for(
                lambda: len(twilio.messages) == 1 and airtable.started(base_id) >= 1,
                what="the SMS at Twilio and the record on its way to Airtable",
            )
            assert not airtable.records(base_id, settings.AIRTABLE_CALLS_TABLE)
            [worker] = run.workers
            run.kill_worker(worker)
            assert Notification.objects.get(channel="sms").state == "sending"
            assert Call.objects.get().airtable_state != Call.SyncState.SYNCED

            run.start_worker()
            run.settle(
                done=lambda: not any(unfinished_work().values()),
                timeout=150,
                reporter=reporter,
            )
        finally:
            reporter.stop()
        outcome = check_every_call_once(run, [call], base_ids=base_ids)

    assert not outcome.problems, str(outcome)
    [record] = airtable.records(base_id, settings.AIRTABLE_CALLS_TABLE)
    assert record["id"] == Call.objects.get().airtable_record_id
    [message] = twilio.messages
    sms = Notification.objects.get(channel="sms")
    assert sms.provider_message_id == message["sid"]
    assert sms.state == Notification.State.DELIVERED
    # The re-send asked Twilio first and found the message it already had.
    assert [r.method for r in twilio.requests] == ["POST", "GET"]
    assert sms.attempts == 2
