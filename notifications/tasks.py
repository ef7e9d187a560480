from celery import shared_task


@shared_task(acks_late=True)
def notification_send(notification_id: int) -> None:
    """Send one outbox row. Filled in by the delivery work (issue 2 item 6)."""
    from .delivery import notification_deliver

    notification_deliver(notification_id=notification_id)
