"""A call's completion and its summary, moments apart, make one Airtable push.

Seen in bench/delivery.py: each call was pushed twice, once for each half,
though the first push usually already carried both; at 20 calls a second
that was a third of the workers' CPU. A sync task whose call is already
synced now sends nothing.
"""

import pytest

from intake.models import Call
from intake.tasks import call_airtable_sync
from tests.intake.test_airtable_sync import (  # noqa: F401  (fixtures)
    TABLE,
    airtable,
    harbor,
    make_call,
)


@pytest.mark.django_db
def test_a_second_sync_task_for_what_was_pushed_sends_nothing(airtable, harbor):  # noqa: F811
    call = make_call(harbor)  # completed, summary in: both tasks queued

    call_airtable_sync(call.pk)
    call_airtable_sync(call.pk)

    call.refresh_from_db()
    assert call.airtable_state == Call.SyncState.SYNCED
    assert len(airtable.requests(harbor.airtable_base_id)) == 1
    [record] = airtable.records(harbor.airtable_base_id, TABLE)
    assert record["fields"]["Summary"] == call.summary


@pytest.mark.django_db
def test_a_change_after_the_push_is_pushed_again(airtable, harbor):  # noqa: F811
    call = make_call(harbor, summary="")
    call_airtable_sync(call.pk)
    Call.objects.filter(pk=call.pk).update(
        summary="Burst pipe", airtable_state=Call.SyncState.PENDING
    )

    call_airtable_sync(call.pk)

    [record] = airtable.records(harbor.airtable_base_id, TABLE)
    assert record["fields"]["Summary"] == "Burst pipe"
    assert len(airtable.requests(harbor.airtable_base_id)) == 2
