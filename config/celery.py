"""The Celery application shared by the worker, beat and the web processes (which only enqueue)."""

import os

from celery import Celery

from config import embedded_broker, kombu_fixes

kombu_fixes.apply()
embedded_broker.register()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
