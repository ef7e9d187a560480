"""Fault 5: the worker is killed with SIGKILL while it sends a call summary.

Real worker processes on the test database and broker; Twilio is the
stand-in, which takes the message and holds its answer, so the worker dies
not knowing Twilio has it. After a new worker starts and the claim's lease
has run out, the summary exists once.
"""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from intake.models import Call
from notifications.models import Notification
from notifications.tasks import outbox_sweep
from standins.twilio import TwilioStandIn
from tests.conftest import fixture_path

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def start_worker(*, twilio_url: str, log: Path) -> subprocess.Popen:
    """A Celery worker process on this run's test database, queue and keys."""
    db = connection.settings_dict
    run = settings.CELERY_TASK_DEFAULT_QUEUE.removeprefix("afterhours-test-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "afterhours.settings.test",
        "AFTERHOURS_TEST_RUN": run,
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "TWILIO_API_BASE_URL": twilio_url,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "afterhours",
                "worker",
                "--pool=threads",
                "--concurrency=2",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=WARNING",
                f"--queues={settings.CELERY_TASK_DEFAULT_QUEUE}",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def wait_for(condition, *, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.2)


def test_a_summary_sms_survives_its_worker_killed_mid_send(
    businesses, transactional_db, tmp_path
):
    body = fixture_path("webhooks", "voice-status-completed.form").read_text()
    log = tmp_path / "workers.log"
    with TwilioStandIn() as twilio:
        # Twilio takes the first message, then holds its answer: the worker
        # is killed inside that wait.
        twilio.slow_next(1, seconds=60, after_accept=True)
        first = start_worker(twilio_url=twilio.url, log=log)
        second = None
        try:
            response = Client().post(
                "/webhooks/twilio/voice/",
                data=body.strip(),
                content_type="application/x-www-form-urlencoded",
                HTTP_X_TWILIO_SIGNATURE="0Dz+tXzjcpCvksq/+VS2cwA1rWU=",
            )
            assert response.status_code == 200
            wait_for(lambda: len(twilio.messages) == 1, what="Twilio took the SMS")

            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
            notification = Notification.objects.get()
            assert notification.state == Notification.State.SENDING

            # The claim's lease (minutes) runs out; then the beat's sweep.
            Notification.objects.filter(pk=notification.pk).update(
                next_attempt_at=timezone.now() - timedelta(seconds=1)
            )
            second = start_worker(twilio_url=twilio.url, log=log)
            assert outbox_sweep() == 1
            wait_for(
                lambda: Notification.objects.filter(
                    state=Notification.State.SENT
                ).exists(),
                what=f"the SMS recorded as sent (worker log: {log})",
            )
        finally:
            stop(first)
            if second is not None:
                stop(second)

    notification.refresh_from_db()
    assert Call.objects.get().status == Call.Status.COMPLETED
    assert len(twilio.messages) == 1
    assert notification.provider_message_id == twilio.messages[0]["sid"]
    assert notification.attempts == 2
    assert [r.method for r in twilio.requests] == ["POST", "GET"]
