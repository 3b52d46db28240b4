"""Runtime files stay out of the work tree and out of git.

The embedded default keeps its SQLite file, cache and file broker under the
data directory (HOMEPOT_VAR_DIR); kombu's file transport also keeps a table of
fanout bindings (used by Celery's remote control) that defaults to ./control.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A broadcast (what `celery inspect` / worker remote control sends) through the
# file transport the embedded default configures.
BROADCAST = """
import django
django.setup()
from celery_app import app
app.control.broadcast("ping", reply=False)
with app.connection_for_write() as conn:
    conn.default_channel.exchange_declare("homepot.test.fanout", type="fanout")
    conn.default_channel.queue_declare("homepot.test.q")
    conn.default_channel.queue_bind("homepot.test.q", "homepot.test.fanout", "")
"""


def _embedded_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    return env | {
        "DJANGO_SETTINGS_MODULE": "homepot.settings",
        "DEBUG": "true",
        "HOMEPOT_VAR_DIR": str(var_dir),
        "PYTHONPATH": str(ROOT),
    }


def test_the_file_broker_keeps_its_control_table_under_the_data_directory(tmp_path):
    workdir, var_dir = tmp_path / "cwd", tmp_path / "data"
    workdir.mkdir()

    result = subprocess.run(
        [sys.executable, "-c", BROADCAST],
        cwd=workdir,
        env=_embedded_env(var_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert list(workdir.iterdir()) == []  # no ./control, ./processed, ./data_in ...
    assert any((var_dir / "broker").rglob("*.exchange")), list(var_dir.rglob("*"))


def test_git_tracks_no_runtime_files():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    runtime = [
        path
        for path in tracked
        if path.split("/")[0] in {"var", "control", "processed", "staticfiles", ".venv"}
        or path.endswith((".sqlite3", ".pyc", ".exchange", ".msg"))
        or "__pycache__" in path
    ]

    assert runtime == []
