"""gunicorn's worker class for homepot.asgi: `--worker-class homepot.web_worker.Worker`."""

from typing import Any

from uvicorn_worker import UvicornWorker


class Worker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {
        **UvicornWorker.CONFIG_KWARGS,
        # Django reads client addresses itself (NUM_PROXIES); uvicorn must not
        # rewrite them from X-Forwarded-For first.
        "proxy_headers": False,
        # The router wakes long polls from Redis: it needs its startup.
        "lifespan": "on",
        "server_header": False,
    }
