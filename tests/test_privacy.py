"""afterhours.privacy: what log lines may show of a phone number or address.

From a tester's run: the subject "Texts failing, call me at 617-555-0123 or
jane.doe@gmail.com" was logged as "61755***0123 or j***@gmail.com", nine of
ten digits shown; and runserver's access log printed admin searches such as
`?q=%2B16175550199` whole.
"""

import logging

import pytest

from afterhours.privacy import (
    RequestLogMaskingFilter,
    mask_email,
    mask_phone,
    mask_text,
)
from notifications.providers.email_log import masked_text

SUBJECT = "Texts failing, call me at 617-555-0123 or jane.doe@gmail.com"


def digits_shown(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+16175550142", "***0142"),
        ("6175550142", "***0142"),
        ("617-555-0142", "***0142"),
        ("+44 20 7946 0958", "***0958"),
        ("5550142", "***0142"),
        ("55501", "***"),
        ("", ""),
    ],
)
def test_a_whole_phone_number_shows_at_most_its_last_four_digits(number, masked):
    assert mask_phone(number) == masked


def test_a_whole_address_keeps_its_first_letter_and_domain():
    assert mask_email("dana@harborplumbing.example") == "d***@harborplumbing.example"
    assert mask_email("not an address") == "***"


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("call me at 617-555-0123 please", "6175550123"),
        ("call me at 617.555.0123 please", "6175550123"),
        ("call me at 617 555 0123 please", "6175550123"),
        ("call me at (617) 555-0123 please", "6175550123"),
        ("call me at +1 (617) 555-0123 please", "16175550123"),
        ("call me at +1-617-555-0123 please", "16175550123"),
        ("call me at +16175550123 please", "16175550123"),
        ("call me at 617-555-0123 ext. 245 please", "6175550123245"),
        ("call me at 617-555-0123 x245 please", "6175550123245"),
        ("call me at 617-555-0123#245 please", "6175550123245"),
        ("call me at +44 20 7946 0958 please", "442079460958"),
    ],
)
def test_text_masking_shows_at_most_the_last_four_digits_of_a_number(text, number):
    masked = mask_text(text)

    assert masked.startswith("call me at ")
    assert masked.endswith(" please")
    assert digits_shown(masked) <= 4, masked
    assert "0123" in masked or "0958" in masked


def test_the_testers_subject_keeps_four_digits_and_no_local_part():
    masked = mask_text(SUBJECT)

    assert masked == "Texts failing, call me at ***0123 or j***@gmail.com"


def test_the_email_log_backend_subject_shows_at_most_four_digits():
    """notifications.providers.email_log masks subjects with mask_phone."""
    masked = masked_text(SUBJECT)

    assert digits_shown(masked) <= 4, masked
    assert "jane.doe" not in masked


def test_short_numbers_references_and_times_are_left_alone():
    text = "Re: No texts [AH-1042], ticket 12345 at 03:15, 2 calls"

    assert mask_text(text) == text


def record_for(logger: str, msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord(logger, logging.INFO, __file__, 1, msg, args, None)


@pytest.mark.parametrize(
    ("request_line", "personal"),
    [
        ("GET /admin/intake/call/?q=%2B16175550199 HTTP/1.1", "6175550199"),
        ("GET /admin/intake/call/?q=+16175550199 HTTP/1.1", "6175550199"),
        ("GET /admin/intake/call/?q=617-555-0199 HTTP/1.1", "555-0199"),
        ("GET /admin/intake/call/?q=%28617%29%20555-0199 HTTP/1.1", "555-0199"),
        ("GET /admin/intake/call/?q=617+555+0199&o=2 HTTP/1.1", "617+555"),
        (
            "GET /admin/accounts/business/?q=dana%40harborplumbing.example HTTP/1.1",
            "dana",
        ),
        (
            "GET /admin/accounts/business/?q=dana@harborplumbing.example HTTP/1.1",
            "dana",
        ),
    ],
)
def test_the_access_log_masks_numbers_and_addresses_in_query_strings(
    request_line, personal
):
    record = record_for("django.server", '"%s" %s %s', request_line, "200", "5120")

    assert RequestLogMaskingFilter().filter(record)

    line = record.getMessage()
    assert personal not in line
    assert "%2B1617" not in line
    assert digits_shown(line.split("?", 1)[1].split(" ")[0]) <= 5, line
    assert line.startswith(f'"{request_line.split("?")[0]}?')
    assert line.endswith(' HTTP/1.1" 200 5120')


def test_the_access_log_keeps_lines_without_personal_data_as_they_were():
    line = "GET /admin/intake/webhookevent/?status__exact=failed&p=2 HTTP/1.1"
    record = record_for("django.server", '"%s" %s %s', line, "200", "1234567")

    assert RequestLogMaskingFilter().filter(record)

    assert record.getMessage() == f'"{line}" 200 1234567'


def test_runserver_access_log_lines_are_masked_through_the_settings(caplog):
    """The filter is wired on the django.server logger in LOGGING."""
    from django.core.servers.basehttp import WSGIRequestHandler

    handler = WSGIRequestHandler.__new__(WSGIRequestHandler)
    handler.request = None
    handler.client_address = ("127.0.0.1", 50000)
    handler.requestline = "GET /admin/intake/call/?q=%2B16175550199 HTTP/1.1"
    caplog.set_level(logging.INFO, logger="django.server")
    logging.getLogger("django.server").addHandler(caplog.handler)
    try:
        handler.log_request(200, 5120)
    finally:
        logging.getLogger("django.server").removeHandler(caplog.handler)

    (line,) = [r.getMessage() for r in caplog.records if r.name == "django.server"]
    assert "6175550199" not in line
    assert "0199" in line
    assert line.startswith('"GET /admin/intake/call/?q=')
    assert line.endswith(" 200 5120")


def test_gunicorn_style_access_records_are_masked_too():
    """gunicorn's access logger passes its atoms as a dict (%(r)s, %(q)s)."""
    atoms = {
        "r": "GET /admin/?q=%2B16175550199 HTTP/1.1",
        "q": "q=%2B16175550199",
        "U": "/admin/",
        "s": "200",
    }
    record = record_for("gunicorn.access", '"%(r)s" %(s)s q=%(q)s', atoms)

    assert RequestLogMaskingFilter().filter(record)

    assert "6175550199" not in record.getMessage()
    assert "0199" in record.getMessage()
