"""An inbound email's admin page stays small however large the message.

The page shows the start of the raw source (64 KB) with the full size, and
links to the whole message as a download (message/rfc822), for staff only.
"""

import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.template.defaultfilters import filesizeformat
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from intake.models import InboundEmail
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PREVIEW = 64 * 1024
# A query that reads the whole raw column, not a slice or its length.
WHOLE_RAW_RE = re.compile(r'(?<![(])"intake_inboundemail"\."raw"')


def stored_email(body_size: int) -> InboundEmail:
    line = "The line 2 summaries stopped at 9pm. Caf\u00e9 open late.\r\n"
    body = (line * (body_size // len(line) + 1))[:body_size]
    raw = (
        "From: Dana <dana@harborplumbing.example>\r\n"
        "To: support@afterhours.example\r\n"
        "Subject: SMS stopped\r\n"
        "Message-ID: <big-1@harborplumbing.example>\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "\r\n" + body + "\r\nTHE VERY END\r\n"
    ).encode()
    return InboundEmail.objects.create(
        message_id="<big-1@harborplumbing.example>",
        raw=raw,
        from_address="dana@harborplumbing.example",
        subject="SMS stopped",
        received_at=timezone.now(),
    )


def change_url(email):
    return reverse("admin:intake_inboundemail_change", args=[email.pk])


def raw_url(email):
    return reverse("admin:intake_inboundemail_raw", args=[email.pk])


def test_a_large_message_page_shows_its_start_and_full_size(admin_client):
    email = stored_email(5 * 1024 * 1024)

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(change_url(email))

    assert response.status_code == 200
    page = response.content.decode()
    assert len(response.content) < PREVIEW + 60_000
    assert "The line 2 summaries stopped at 9pm" in page
    assert "THE VERY END" not in page
    size = filesizeformat(len(bytes(email.raw)))
    assert f"Showing the first 64.0\xa0KB of {size}." in page
    assert size.startswith("5.")
    assert raw_url(email) in page
    assert not [q["sql"] for q in queries if WHOLE_RAW_RE.search(q["sql"])]


def test_a_small_message_is_shown_whole_without_a_note(admin_client):
    email = stored_email(2_000)

    page = admin_client.get(change_url(email)).content.decode()

    assert "THE VERY END" in page
    assert "Caf\u00e9" in page
    assert "first 64" not in page
    assert raw_url(email) in page


def test_the_list_never_loads_raw_messages(admin_client):
    stored_email(1_000_000)

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:intake_inboundemail_changelist"))

    assert response.status_code == 200
    assert not [q["sql"] for q in queries if WHOLE_RAW_RE.search(q["sql"])]


def test_the_download_is_the_whole_message_as_rfc822(admin_client):
    email = stored_email(5 * 1024 * 1024)

    response = admin_client.get(raw_url(email))

    assert response.status_code == 200
    assert response["Content-Type"] == "message/rfc822"
    assert response["Content-Disposition"] == (
        f'attachment; filename="inbound-email-{email.pk}.eml"'
    )
    body = b"".join(response.streaming_content)
    assert body == bytes(InboundEmail.objects.get(pk=email.pk).raw)
    assert int(response["Content-Length"]) == len(body)
    assert body.endswith(b"THE VERY END\r\n")


def test_the_download_is_refused_to_anyone_not_staff(client):
    email = stored_email(10_000)

    anonymous = client.get(raw_url(email))
    client.force_login(UserFactory())
    customer = client.get(raw_url(email))

    for response in (anonymous, customer):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
        assert b"THE VERY END" not in response.content


def test_the_download_needs_permission_to_view_inbound_email(client):
    email = stored_email(10_000)
    staff = UserFactory(is_staff=True)
    client.force_login(staff)

    assert client.get(raw_url(email)).status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="view_inboundemail"))
    assert client.get(raw_url(email)).status_code == 200


def test_an_unknown_message_download_is_404(admin_client):
    assert admin_client.get(raw_url(InboundEmail(pk=999_999))).status_code == 404


def test_saving_the_page_keeps_the_raw_message(admin_client):
    """The page loads the message without its raw bytes; saving must not
    write an empty message back."""
    email = stored_email(100_000)
    raw = bytes(email.raw)

    response = admin_client.post(
        change_url(email), {"status": "rejected", "reason": "looked at", "ticket": ""}
    )

    assert response.status_code == 302
    email.refresh_from_db()
    assert email.status == InboundEmail.Status.REJECTED
    assert bytes(email.raw) == raw


@pytest.mark.django_db
def test_inbound_email_cannot_be_added_by_hand(admin_client):
    """Hand-made rows had no arrival time: the add form gave a 500."""
    response = admin_client.post(
        "/admin/intake/inboundemail/add/", {"status": "pending", "reason": "x"}
    )

    assert response.status_code == 403
    assert (
        "inboundemail/add/"
        not in admin_client.get("/admin/intake/inboundemail/").content.decode()
    )
