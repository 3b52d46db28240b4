"""The Celery application: configuration from Django settings (CELERY_*), tasks
autodiscovered from every installed app, schedules in django-celery-beat."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "homepot.settings")

app = Celery("homepot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
