"""Fault 5: the worker is killed with SIGKILL while it sends a call summary.

Real worker processes on the test database and a Redis of their own (the
fault-run harness, tests/faults/harness.py); Twilio is the stand-in, which
takes the message and holds its answer, so the worker dies not knowing
Twilio has it. After a new worker starts and the claim's lease has run out,
the summary exists once. (tests/faults/test_worker_killed_mid_call.py kills
the worker in the Airtable upsert too.)
"""

from datetime import timedelta
from urllib.parse import parse_qsl

import pytest
from django.utils import timezone

from intake.models import Call
from notifications.models import Notification
from standins.twilio import TwilioStandIn
from tests.conftest import fixture_path
from tests.faults.harness import Provider, fault_run, wait_for

pytestmark = pytest.mark.slow


@pytest.mark.timeout(180)
def test_a_summary_sms_survives_its_worker_killed_mid_send(
    businesses, transactional_db, tmp_path
):
    body = fixture_path("webhooks", "voice-status-completed.form").read_text()
    twilio = TwilioStandIn()
    # Twilio takes the first message, then holds its answer: the worker is
    # killed inside that wait.
    twilio.slow_next(1, seconds=60, after_accept=True)
    with fault_run(tmp_path, workers=1, summary_wait=0, twilio=twilio) as run:
        provider = Provider(run.base_url)
        answer = provider.post_form(
            "/webhooks/twilio/voice/", dict(parse_qsl(body.strip()))
        )
        assert answer == 200
        wait_for(lambda: len(twilio.messages) == 1, what="Twilio took the SMS")

        [worker] = run.workers
        run.kill_worker(worker)
        notification = Notification.objects.get()
        assert notification.state == Notification.State.SENDING

        # The claim's lease runs out; then beat's outbox sweep hands the row
        # to the new worker.
        Notification.objects.filter(pk=notification.pk).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
        run.start_worker()
        wait_for(
            lambda: Notification.objects.filter(state=Notification.State.SENT).exists(),
            what=f"the SMS recorded as sent (logs: {run.workdir})",
        )

    notification.refresh_from_db()
    assert Call.objects.get().status == Call.Status.COMPLETED
    assert len(twilio.messages) == 1
    assert notification.provider_message_id == twilio.messages[0]["sid"]
    assert notification.attempts == 2
    assert [r.method for r in twilio.requests] == ["POST", "GET"]
