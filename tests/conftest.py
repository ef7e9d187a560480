import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_path(*parts: str) -> Path:
    return FIXTURES.joinpath(*parts)


@pytest.fixture
def businesses(db):
    """The customer list the shared cases assume, imported the product's way."""
    from accounts.models import Business
    from accounts.services import business_import

    business_import(records=json.loads(fixture_path("businesses.json").read_text()))
    return {b.name: b for b in Business.objects.all()}


@pytest.fixture(scope="session")
def _celery_app():
    from afterhours.celery import app

    return app


@pytest.fixture
def celery_worker(transactional_db, _celery_app):
    """A real Celery worker on the Redis broker, in a thread of this process.

    Tasks it runs see the test database because the test is transactional
    (rows are committed). Each test run has its own Redis key prefix and
    queue (see settings.test), so parallel runs never share messages.
    """
    from celery.contrib.testing.worker import start_worker

    with start_worker(
        _celery_app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        shutdown_timeout=30,
        loglevel="WARNING",
    ) as worker:
        yield worker
    _close_other_connections()


def _close_other_connections():
    """End the database sessions the worker's threads left open.

    Each pool thread opened its own connection; left alone they keep the
    test database busy and it cannot be dropped at the end of the run.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session", autouse=True)
def _purge_test_broker_keys():
    """Leave no keys of this run in Redis."""
    yield
    import redis
    from django.conf import settings

    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix")
    if not prefix:
        return
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    keys += list(client.scan_iter(match=f"*{settings.CELERY_TASK_DEFAULT_QUEUE}*"))
    if keys:
        client.delete(*keys)
