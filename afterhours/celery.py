import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "afterhours.settings.local")

app = Celery("afterhours")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def close_old_database_connections(task=None, **kwargs) -> None:
    """Close this thread's connections that broke or outlived CONN_MAX_AGE.

    What Django does around every request; the others are kept for the next
    task (settings CELERY_DB_REUSE_MAX stops Celery closing them all). A
    task run eagerly is inside its caller's transaction and is left alone.
    """
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
