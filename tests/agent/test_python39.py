"""The agent installs and runs on the oldest Python it claims (3.9)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def find_python39() -> str | None:
    """A python3.9 that really runs (pyenv's shims exist even for inactive versions)."""
    candidates = [
        shutil.which("python3.9"),
        *map(str, Path.home().glob(".pyenv/versions/3.9*/bin/python3.9")),
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "--version"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.startswith("Python 3.9"):
            return candidate
    return None


PYTHON39 = find_python39()


@pytest.mark.skipif(PYTHON39 is None, reason="no python3.9 on this machine")
def test_the_agent_installs_and_collects_on_python_3_9(tmp_path):
    venv = tmp_path / "venv39"
    subprocess.run([PYTHON39, "-m", "venv", str(venv)], check=True)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        str(ROOT / "agent_client"),
    ]
    subprocess.run(pip, check=True, timeout=300)

    collected = subprocess.run(
        [
            str(venv / "bin" / "homepot-agent"),
            "--config",
            str(tmp_path / "none.toml"),
            "collect",
            "--once",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    imports = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import homepot_agent.runtime, homepot_agent.simulate",
        ],
        capture_output=True,
        text=True,
    )

    assert "cpu_percent" in json.loads(collected.stdout)
    assert imports.returncode == 0, imports.stderr
