"""The ASGI entry point production runs (gunicorn with HOMEPOT's uvicorn worker).

Django answers every request synchronously in a small thread pool (a2wsgi);
long polls wait in the event loop (homepot.longpoll). Measured here, a2wsgi's
thread hop costs far less than Django's own ASGI handler, which runs sync
middleware and views through asgiref one at a time per process.
"""

import os

from a2wsgi import WSGIMiddleware
from django.conf import settings
from django.core.wsgi import get_wsgi_application

from homepot.longpoll import LongPollRouter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "homepot.settings")

application = LongPollRouter(
    WSGIMiddleware(get_wsgi_application(), workers=settings.WEB_THREADS),
    settings.REDIS_URL,
)
