"""Support emails reporting a failing part, fed through the product's intake."""

import datetime as dt
from email.utils import format_datetime

from intake.services import inbound_email_process, inbound_email_store

# Monday 8 December 2026, 22:30 in New York: after hours for everyone.
NIGHT = dt.datetime(2026, 12, 8, 3, 30, tzinfo=dt.UTC)

# Each an SMS failure with the email fallback working: P1 on its own.
SMS_REPORTS = {
    "harbor": (
        "Dana Whitfield <dispatch@harborplumbing.example>",
        "SMS alerts not arriving",
        "Our on-call isn't getting the text alerts for calls to 617-555-0142 "
        "since about 10:10pm ET tonight. The email copies are coming through, "
        "so we're working off email for now. Example caller 617-555-0110 at "
        "10:12pm.",
    ),
    "harbor_oncall": (
        "Dana Whitfield <dana@harborplumbing.example>",
        "Still no texts",
        "I'm not receiving the SMS for calls to 617-555-0142 since 10:10pm ET. "
        "The emails arrive, I'm calling back from those. Example caller "
        "617-555-0111 at 10:25pm.",
    ),
    "cedar": (
        "Front Desk <frontdesk@cedarridgevet.example>",
        "Text messages missing tonight",
        "Since 9:15pm CT our on-call is not receiving the SMS for calls to "
        "312-555-0118. Email summaries still arrive. Example: caller "
        "312-555-0111 at 9:20pm. We're reading the emails meanwhile.",
    ),
    "summit": (
        "Summit Ops <ops@summitpm.example>",
        "No SMS for calls",
        "Our maintenance on-call isn't getting the text alerts for calls to "
        "720-555-0163 since around 8:20pm MST tonight. The email copies of the "
        "summaries are coming through, so we're working off email for now. "
        "Example: a tenant called from 303-555-0110 at 8:25pm.",
    ),
    "bayview": (
        "Bayview Office <office@bayviewdental.example>",
        "SMS not coming through",
        "Grace isn't getting SMS notifications for calls to 415-555-0126 since "
        "7:30pm PT; the email fallback works. Example caller 415-555-0199 at "
        "7:31pm. We check email for now.",
    ),
}


def report_email(key: str, at: dt.datetime) -> bytes:
    sender, subject, body = SMS_REPORTS[key]
    return (
        f"From: {sender}\r\nTo: support@afterhours.example\r\n"
        f"Subject: {subject}\r\nDate: {format_datetime(at)}\r\n"
        f"Message-ID: <{key}.{at:%Y%m%d%H%M%S}@mail.example>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def store_report(key: str, at: dt.datetime):
    inbound_email, _ = inbound_email_store(
        raw=report_email(key, at), esp="test", received_at=at
    )
    return inbound_email


def ingest_report(key: str, at: dt.datetime):
    """Store and process one report as the intake task does; its result."""
    return inbound_email_process(inbound_email_id=store_report(key, at).pk)
