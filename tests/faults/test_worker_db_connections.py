"""A worker keeps its database connection from one task to the next.

Found by bench/delivery.py: Celery's Django fixup closed every connection
before and after each task, so every task opened a new PostgreSQL backend,
which took half the machine's CPU at 10 calls a second. Now connections
live for CONN_MAX_AGE and only broken or expired ones are closed, as Django
does around a request.
"""

import time

import pytest
from celery import shared_task
from django.db import connection, connections, transaction

BACKENDS: list[int] = []


@shared_task
def note_database_backend() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        BACKENDS.append(cursor.fetchone()[0])


@pytest.fixture
def conn_max_age():
    """CONN_MAX_AGE as base settings have it (the test settings use 0)."""
    saved = connections.settings["default"]["CONN_MAX_AGE"]
    connections.settings["default"]["CONN_MAX_AGE"] = 60
    yield
    connections.settings["default"]["CONN_MAX_AGE"] = saved


def test_a_worker_thread_uses_one_connection_for_many_tasks(
    conn_max_age, celery_worker
):
    BACKENDS.clear()
    for n in range(6):
        note_database_backend.delay()
        deadline = time.monotonic() + 30
        while len(BACKENDS) <= n:
            assert time.monotonic() < deadline, "the worker did not run the task"
            time.sleep(0.05)

    # One backend per worker thread (the fixture runs two), not per task.
    assert len(set(BACKENDS)) <= 2, BACKENDS


@pytest.mark.django_db
def test_a_task_run_eagerly_leaves_its_callers_transaction_open():
    BACKENDS.clear()
    with transaction.atomic():
        note_database_backend.apply()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] == BACKENDS[0]
        assert connection.in_atomic_block
