from celery import shared_task

from devices import services


@shared_task
def mark_devices_offline() -> int:
    return len(services.devices_mark_offline())
