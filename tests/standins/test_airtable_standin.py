"""The Airtable stand-in answers what pyairtable sends as Airtable would."""

import pytest
import requests
from pyairtable import Api

from standins.airtable import AirtableStandIn

BASE = "appStandInTest001"


@pytest.fixture
def airtable():
    with AirtableStandIn(rate_limit=1000) as standin:
        yield standin


def table_for(standin, *, key=None, base=BASE, **api_options):
    api_options.setdefault("retry_strategy", None)
    api = Api(key or standin.api_key, endpoint_url=standin.url, **api_options)
    return api.table(base, "Calls")


def test_request_without_the_right_bearer_token_is_refused_401(airtable):
    with pytest.raises(requests.HTTPError) as refused:
        table_for(airtable, key="patSomeoneElse").all()

    assert refused.value.response.status_code == 401
    assert refused.value.response.json()["error"]["type"] == "AUTHENTICATION_REQUIRED"


def test_more_than_ten_records_in_one_request_is_refused_422(airtable):
    table = table_for(airtable)

    with pytest.raises(requests.HTTPError) as refused:
        table.api.post(table.urls.records, json={"records": [{"fields": {}}] * 11})

    assert refused.value.response.status_code == 422
    assert refused.value.response.json()["error"]["type"] == "INVALID_RECORDS"
    assert airtable.records(BASE, "Calls") == []


def test_upsert_creates_once_then_updates_the_record_matching_the_merge_field(
    airtable,
):
    table = table_for(airtable)

    first = table.batch_upsert(
        [{"fields": {"Call ID": "CA1", "Status": "ringing"}}], key_fields=["Call ID"]
    )
    second = table.batch_upsert(
        [
            {"fields": {"Call ID": "CA1", "Status": "completed"}},
            {"fields": {"Call ID": "CA2", "Status": "busy"}},
        ],
        key_fields=["Call ID"],
    )

    [created] = first["createdRecords"]
    assert second["updatedRecords"] == [created]
    assert len(second["createdRecords"]) == 1
    stored = {r["fields"]["Call ID"]: r for r in airtable.records(BASE, "Calls")}
    assert stored["CA1"]["id"] == created
    assert stored["CA1"]["fields"]["Status"] == "completed"
    assert sorted(stored) == ["CA1", "CA2"]


def test_listing_pages_through_offsets(airtable):
    table = table_for(airtable)
    table.batch_create([{"N": n} for n in range(23)])

    pages = list(table.iterate(page_size=7))

    assert [len(page) for page in pages] == [7, 7, 7, 2]
    assert [r["fields"]["N"] for page in pages for r in page] == list(range(23))


def test_more_than_five_requests_a_second_are_refused_and_the_base_waits():
    with AirtableStandIn(penalty_seconds=60) as airtable:
        table = table_for(airtable)
        statuses = []
        for _ in range(8):
            try:
                table.all()
                statuses.append(200)
            except requests.HTTPError as exc:
                statuses.append(exc.response.status_code)
                body = exc.response.json()

        other = table_for(airtable, base="appAnotherBase01")
        other.all()

    assert statuses == [200] * 5 + [429] * 3
    assert body["errors"][0]["error"] == "RATE_LIMIT_REACHED"
    # Only the sixth broke the rate; the next two met the base's wait.
    assert airtable.over_rate_429s(BASE) == 1
    assert airtable.max_requests_in_window(BASE) == 8
    assert airtable.over_rate_429s("appAnotherBase01") == 0


def test_pyairtable_default_retries_give_up_long_before_airtable_wait_ends():
    """Why intake.airtable turns pyairtable's retries off and keeps its own."""
    with AirtableStandIn() as airtable:
        airtable.rate_limit_for(30)

        with pytest.raises(requests.exceptions.RetryError):
            table_for(airtable, retry_strategy=True).all()

        assert {r.status for r in airtable.requests()} == {429}


def test_server_errors_before_and_after_the_write(airtable):
    table = table_for(airtable)
    airtable.fail_next(status=503)
    airtable.fail_next(status=500, after_write=True)

    with pytest.raises(requests.HTTPError):
        table.create({"Call ID": "CA-before"})
    with pytest.raises(requests.HTTPError):
        table.create({"Call ID": "CA-after"})

    assert [r["fields"]["Call ID"] for r in airtable.records(BASE, "Calls")] == [
        "CA-after"
    ]
    assert [r.status for r in airtable.requests()] == [503, 500]


def test_slow_answer_times_the_client_out(airtable):
    airtable.slow_next(seconds=1.0)

    with pytest.raises(requests.Timeout):
        table_for(airtable, timeout=(1, 0.2)).all()
