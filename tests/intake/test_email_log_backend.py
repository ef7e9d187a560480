"""Without ESP credentials outbound email is logged masked, never printed whole.

From a new-user trial: the console backend printed each first reply in full
(customer's address, name, phone numbers, words) into the worker's log.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import mail
from django.test import override_settings

from notifications.delivery import notification_deliver
from notifications.models import Notification
from notifications.providers.email_log import LoggingEmailBackend, masked_text
from tests.conftest import fixture_path

ROOT = Path(__file__).resolve().parent.parent.parent
BACKEND = "notifications.providers.email_log.LoggingEmailBackend"


@pytest.fixture
def first_reply(businesses):
    """T01's first reply, owed in the outbox and not yet sent."""
    from intake.services import inbound_email_process, inbound_email_store

    row, _ = inbound_email_store(
        raw=fixture_path("triage", "T01.eml").read_bytes(), esp="file"
    )
    inbound_email_process(inbound_email_id=row.pk)
    return Notification.objects.get(reason=Notification.Reason.FIRST_REPLY)


@override_settings(EMAIL_BACKEND=BACKEND)
def test_first_reply_is_one_masked_log_line(first_reply, caplog):
    caplog.set_level(logging.INFO, logger="notifications.providers.email_log")

    notification_deliver(notification_id=first_reply.pk)

    lines = [
        record.getMessage()
        for record in caplog.records
        if record.name == "notifications.providers.email_log"
    ]
    assert len(lines) == 1
    line = lines[0]
    assert "to=d***@harborplumbing.example" in line
    assert "dispatch@harborplumbing.example" not in line
    assert f"body_chars={len(first_reply.body)}" in line
    assert "[AH-" in line
    assert f"message_id={first_reply.headers['Message-ID']}" in line
    for personal in ("Marcus", "617", "0142", "Harbor Plumbing & Heating"):
        assert personal not in line


@override_settings(EMAIL_BACKEND=BACKEND)
def test_no_log_line_carries_the_body(first_reply, caplog):
    caplog.set_level(logging.DEBUG)

    notification_deliver(notification_id=first_reply.pk)

    everything = "\n".join(record.getMessage() for record in caplog.records)
    for line in first_reply.body.splitlines():
        if len(line.strip()) > 20:
            assert line.strip() not in everything
    assert "dispatch@harborplumbing.example" not in everything


@override_settings(EMAIL_BACKEND=BACKEND)
def test_logged_email_is_marked_logged_and_keeps_its_text(first_reply):
    notification_deliver(notification_id=first_reply.pk)

    first_reply.refresh_from_db()
    assert first_reply.state == Notification.State.LOGGED
    assert "Marcus" in first_reply.body
    assert first_reply.recipient == "dispatch@harborplumbing.example"


def test_backend_counts_each_message_it_takes():
    messages = [
        mail.EmailMessage("Hi", "Body", "support@afterhours.example", ["a@b.example"]),
        mail.EmailMessage("Hi", "Body", "support@afterhours.example", ["c@d.example"]),
    ]

    assert LoggingEmailBackend().send_messages(messages) == 2
    assert LoggingEmailBackend().send_messages([]) == 0


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("Re: line 617-555-0142 down [AH-1001]", "555-0142"),
        ("Re: call from (415) 555-0177 x22", "555-0177"),
        ("Re: dana@harborplumbing.example asked", "dana@"),
        ("Re: +16175550142 silent", "6175550142"),
    ],
)
def test_subject_numbers_and_addresses_are_masked(text, hidden):
    masked = masked_text(text)

    assert hidden not in masked
    assert masked.startswith("Re: ")


def test_subject_reference_survives_masking():
    assert masked_text("Re: No texts [AH-1042]") == "Re: No texts [AH-1042]"


def test_no_credentials_default_is_the_logging_backend():
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "EMAIL_", "MAILGUN_", "POSTMARK_", "SENDGRID_"))
    }
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, django; from django.conf import settings; django.setup();"
            "print(json.dumps(settings.EMAIL_BACKEND))",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "afterhours.settings.local"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == BACKEND
