# HOMEPOT server image: one image for web (gunicorn), migrate, worker and beat.
#   docker build -t homepot .
#   docker run -e SECRET_KEY=... -e ALLOWED_HOSTS=... -e DATABASE_URL=... -e REDIS_URL=... homepot

# --- build: the dependencies, in a virtualenv copied whole into the runtime stage ---
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY . .
# `pip install .` resolves the pinned dependencies from pyproject.toml. The
# project itself runs from /app (templates and migrations included), so its
# own installed copy is removed again: there is one copy of the code.
RUN pip install --no-cache-dir . \
    && pip uninstall --yes homepot

# --- runtime ---
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=homepot.settings \
    PYTHONPATH=/app \
    PATH=/opt/venv/bin:$PATH

RUN groupadd --system homepot \
    && useradd --system --gid homepot --home-dir /app --no-create-home --shell /usr/sbin/nologin homepot

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY . .

# Static files are collected into the image (served by whitenoise). Settings
# need a SECRET_KEY with DEBUG off; this throwaway one exists only for this step.
# var/ is where the embedded default (SQLite, file cache/broker) would write
# when DATABASE_URL/REDIS_URL are unset: the only directory the app user owns.
# var/ssh holds the SSH key for agentless targets (compose mounts a volume there).
RUN SECRET_KEY=build-only python manage.py collectstatic --noinput \
    && mkdir -p /app/var/ssh \
    && chown -R homepot:homepot /app/var \
    && chmod 700 /app/var/ssh

USER homepot

EXPOSE 8000

# The probe calls 127.0.0.1, a host name the settings always allow.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]

# sh -c so ${WEB_CONCURRENCY} is read at start-up; exec so gunicorn is PID 1 and gets SIGTERM.
# homepot.asgi: Django in a thread pool (WEB_THREADS per worker), long polls waiting in
# each worker's event loop. A graceful stop outlasts the longest long poll (30 s);
# the backlog takes a fleet reconnecting at once; agents' connections are kept
# between heartbeats (60 s) instead of gunicorn's 2 s.
CMD ["sh", "-c", "exec gunicorn homepot.asgi:application --bind 0.0.0.0:8000 --workers ${WEB_CONCURRENCY:-3} --worker-class homepot.web_worker.Worker --graceful-timeout 40 --backlog 4096 --keep-alive 75 --access-logfile -"]
