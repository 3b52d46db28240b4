"""The container deployment (Dockerfile, compose.yaml) checked without Docker.

Every command the containers run must name something that exists in this
project: a management command, the WSGI application, the Celery app and beat
scheduler, the health URLs. No database is needed. `docker compose config` runs
as well when Docker is available.
"""

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import dj_database_url
import pytest
import yaml
from celery import Celery
from celery.beat import Scheduler
from celery.utils.imports import symbol_by_name
from django.conf import settings
from django.core.management import get_commands
from django.urls import resolve
from uvicorn_worker import UvicornWorker

from homepot import health

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "README.md"
SETTINGS_FILE = ROOT / "homepot" / "settings.py"
# What a deployment must be able to say about proxies, https, cookies, login
# throttling and tokens (issue 9): compose passes each through.
SECURITY_SETTINGS = {
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "NUM_PROXIES",
    "TRUST_PROXY_SSL_HEADER",
    "HTTPS",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_COOKIES",
    "ADMIN_LOGIN_FAILURE_LIMIT",
    "ADMIN_LOGIN_COOLOFF_MINUTES",
    "API_TOKEN_TTL_DAYS",
}

APP_SERVICES = {"migrate", "web", "worker", "beat"}
ALL_SERVICES = {"postgres", "redis"} | APP_SERVICES
# ${NAME:?message}: compose refuses to start when NAME is unset or empty.
REQUIRED_VARIABLE = re.compile(r"\$\{(?P<name>\w+):\?[^}]*\}")
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::?[-?](?P<default>[^}]*))?\}")


# --- helpers --------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict:
    return compose()["services"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "Dockerfile ends inside a continued instruction"
    return instructions


def final_stage() -> list[tuple[str, str]]:
    """Instructions of the last build stage: what the image runs."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def exec_form(arguments: str) -> list[str]:
    """A JSON (exec form) argument list, or a shell-form string split like sh would."""
    if arguments.startswith("["):
        return json.loads(arguments)
    return ["/bin/sh", "-c", arguments]


def image_cmd() -> list[str]:
    cmds = [arguments for keyword, arguments in final_stage() if keyword == "CMD"]
    assert cmds, "the Dockerfile has no CMD"
    return exec_form(cmds[-1])


def image_healthcheck() -> list[str]:
    checks = [arguments for keyword, arguments in final_stage() if keyword == "HEALTHCHECK"]
    assert checks, "the Dockerfile has no HEALTHCHECK"
    _, _, command = checks[-1].partition("CMD ")
    return exec_form(command.strip())


def command_words(command: list[str] | str) -> list[str]:
    """The words a command runs, looking through `sh -c "exec ..."` wrappers."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    if len(words) >= 3 and Path(words[0]).name in {"sh", "bash"} and words[1] == "-c":
        words = shlex.split(words[2])
    if words and words[0] == "exec":
        words = words[1:]
    return words


def service_command(name: str) -> list[str]:
    """The command a compose service runs: its own, else the image's CMD."""
    service = services()[name]
    if "command" in service:
        return command_words(service["command"])
    assert "build" in service, f"{name} has no command and is not built from the Dockerfile"
    return command_words(image_cmd())


def option_value(words: list[str], *names: str) -> str | None:
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                return words[i + 1]
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def probe_url(command: list[str]) -> str:
    """The URL a healthcheck command requests."""
    urls = re.findall(r"https?://[^\s'\"]+", " ".join(command))
    assert len(urls) == 1, f"expected one URL in the healthcheck, found {urls}"
    return urls[0]


def interpolate(value: str) -> str:
    """Compose-style ${VAR:?msg} / ${VAR:-default}, with sample values for required ones."""

    def replace(match: re.Match) -> str:
        if match.group("default") is not None and "?" not in match.group(0):
            return match.group("default")
        return f"sample-{match.group('name').lower().replace('_', '-')}"

    return VARIABLE.sub(replace, value)


def gunicorn_app(words: list[str]) -> str:
    """The `module:attribute` application argument of a gunicorn command."""
    assert Path(words[0]).name == "gunicorn", f"not a gunicorn command: {words}"
    targets = [word for word in words[1:] if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", word)]
    assert len(targets) == 1, f"expected one application in {words}"
    return targets[0]


def readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def table_variables(section: str) -> set[str]:
    """Variable names in the first column of the Markdown tables of a section."""
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_column = line.split("|")[1]
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_column))
    return names


# --- compose.yaml -----------------------------------------------------------------


def test_compose_parses_and_has_every_service() -> None:
    document = compose()

    assert set(document["services"]) == ALL_SERVICES
    assert "pgdata" in document["volumes"]
    assert any(
        volume.startswith("pgdata:") for volume in document["services"]["postgres"]["volumes"]
    )


def test_databases_web_have_healthchecks_and_other_app_services_do_not_inherit_the_http_one() -> (
    None
):
    all_services = services()

    for name in ("postgres", "redis", "web"):
        healthcheck = all_services[name].get("healthcheck", {})
        assert healthcheck.get("test"), f"{name} has no healthcheck"
        assert not healthcheck.get("disable"), f"{name} has its healthcheck disabled"
    assert "pg_isready" in " ".join(all_services["postgres"]["healthcheck"]["test"])
    assert all_services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"] or (
        "redis-cli ping" in " ".join(all_services["redis"]["healthcheck"]["test"])
    )
    # The image's HEALTHCHECK probes HTTP on :8000, which only web serves.
    for name in ("migrate", "worker", "beat"):
        assert all_services[name].get("healthcheck", {}).get("disable") is True, name


def test_app_services_are_built_from_the_dockerfile_with_the_same_configuration() -> None:
    all_services = services()
    required_env = {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG"}

    for name in APP_SERVICES:
        service = all_services[name]
        assert service["build"] in (".", {"context": "."}), name
        assert required_env <= set(service["environment"]), name
        assert str(service["environment"]["DEBUG"]).lower() == "false", name
        assert (
            service["environment"]["SECRET_KEY"] == all_services["web"]["environment"]["SECRET_KEY"]
        ), name
    long_running = APP_SERVICES - {"migrate"}
    for name in long_running | {"postgres", "redis"}:
        assert all_services[name]["restart"] == "unless-stopped", name
    # A one-shot that restarted after succeeding would run migrations forever.
    assert all_services["migrate"]["restart"] == "no"


def test_start_order_waits_for_healthy_databases_and_finished_migrations() -> None:
    all_services = services()

    assert all_services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("web", "worker", "beat"):
        depends_on = all_services[name]["depends_on"]
        assert depends_on["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends_on["redis"] == {"condition": "service_healthy"}, name


def test_app_services_reach_postgres_and_redis_by_service_name() -> None:
    all_services = services()
    postgres_env = all_services["postgres"]["environment"]

    for name in APP_SERVICES:
        env = all_services[name]["environment"]
        database = dj_database_url.parse(interpolate(env["DATABASE_URL"]))
        assert database["ENGINE"] == "django.db.backends.postgresql", name
        assert (database["HOST"], database["PORT"]) == ("postgres", 5432), name
        assert database["NAME"] == postgres_env["POSTGRES_DB"], name
        assert database["USER"] == postgres_env["POSTGRES_USER"], name
        assert database["PASSWORD"] == interpolate(postgres_env["POSTGRES_PASSWORD"]), name
        assert re.fullmatch(r"redis://redis:6379/\d+", env["REDIS_URL"]), name


def test_compose_has_no_literal_secret_values() -> None:
    document = compose()
    all_services = document["services"]

    for name in APP_SERVICES:
        env = all_services[name]["environment"]
        assert REQUIRED_VARIABLE.fullmatch(env["SECRET_KEY"]).group("name") == "SECRET_KEY"
        password = re.fullmatch(
            r"postgres://homepot:(.+)@postgres:5432/homepot", env["DATABASE_URL"]
        )
        assert password, env["DATABASE_URL"]
        assert REQUIRED_VARIABLE.fullmatch(password.group(1)).group("name") == "POSTGRES_PASSWORD"
    postgres_password = all_services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert REQUIRED_VARIABLE.fullmatch(postgres_password).group("name") == "POSTGRES_PASSWORD"
    # Any other secret-looking variable anywhere must come from the environment too:
    # the host's variable of the same name (optional ones, like EMAIL_HOST_PASSWORD,
    # may be empty), never a value or a default written in the file.
    for name, service in all_services.items():
        for key, value in (service.get("environment") or {}).items():
            # (names ending so: API_TOKEN_TTL_DAYS is a lifetime, not a secret)
            if re.search(r"(SECRET|PASSWORD|TOKEN|API_KEY)(_KEY)?$", key):
                passed = VARIABLE.fullmatch(str(value))
                assert passed and passed.group("name") == key, f"{name}: {key} is hard-coded"
                assert not passed.group("default") or REQUIRED_VARIABLE.fullmatch(str(value)), (
                    f"{name}: {key} has a default written in the file"
                )


def test_compose_passes_through_every_deployment_setting_the_readme_names() -> None:
    deployment = table_variables(readme_section("Deploy with Docker Compose"))
    all_services = services()

    assert SECURITY_SETTINGS <= deployment, SECURITY_SETTINGS - deployment
    for name in APP_SERVICES:
        env = all_services[name]["environment"]
        for variable in deployment:
            assert variable in env, f"{name} does not pass {variable}"
            # the host's variable of the same name, not a value fixed in the file
            passed = VARIABLE.fullmatch(str(env[variable]))
            assert passed and passed.group("name") == variable, (name, variable, env[variable])


def test_every_deployment_setting_is_documented_in_the_configuration_table() -> None:
    deployment = table_variables(readme_section("Deploy with Docker Compose"))
    configuration = table_variables(readme_section("Configuration"))

    assert deployment <= configuration, deployment - configuration


def test_every_variable_the_settings_read_is_in_the_configuration_table() -> None:
    read = set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', SETTINGS_FILE.read_text()))
    documented = table_variables(readme_section("Configuration"))

    retired = {"DEVICE_AUTH_FAILURES_PER_DEVICE"}  # read only to refuse it, loudly

    assert len(read) > 40  # the pattern still finds the settings
    assert read - documented - retired == set()


def test_every_variable_compose_sets_is_one_the_settings_read() -> None:
    settings_source = SETTINGS_FILE.read_text()
    # WEB_CONCURRENCY is read by the image's gunicorn command line instead.
    read_elsewhere = {"WEB_CONCURRENCY"}

    for name in APP_SERVICES:
        for variable in services()[name]["environment"]:
            if variable in read_elsewhere:
                continue
            assert f'"{variable}"' in settings_source, f"{name}: {variable} is read by nothing"


def test_unset_pass_through_variables_give_the_documented_defaults(tmp_path: Path) -> None:
    # ${NAME:-} hands the container an empty string when the host has no value.
    env = services()["web"]["environment"]
    empty = {
        variable: "" for variable, value in env.items() if re.fullmatch(r"\$\{\w+:-\}", str(value))
    }
    assert SECURITY_SETTINGS - {"ALLOWED_HOSTS"} <= set(empty)
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", *empty}}
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_PROXY_SSL_HEADER, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
        "s.SESSION_COOKIE_SECURE, s.AXES_FAILURE_LIMIT, s.API_TOKEN_TTL_DAYS, "
        "s.REST_FRAMEWORK['NUM_PROXIES'], s.CSRF_TRUSTED_ORIGINS)"
    )

    result = subprocess.run(
        [sys.executable, "-c", script],
        env=clean
        | empty
        | {
            "SECRET_KEY": "compose-defaults",
            "DEBUG": "false",
            "HOMEPOT_VAR_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "homepot.settings",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "False", "0", "True", "5", "365", "0", "[]"]


# --- the commands the containers run ---------------------------------------------------


def test_manage_py_commands_are_django_management_commands() -> None:
    commands = get_commands()
    checked = 0

    for name in APP_SERVICES:
        words = service_command(name)
        if words[:2] == ["python", "manage.py"]:
            assert (ROOT / "manage.py").is_file()
            assert words[2] in commands, f"{name}: no management command {words[2]!r}"
            checked += 1
    assert service_command("migrate")[:3] == ["python", "manage.py", "migrate"]
    assert "--noinput" in service_command("migrate")
    assert checked >= 1


def test_gunicorn_serves_the_importable_asgi_application_of_the_settings() -> None:
    words = service_command("web")
    target = gunicorn_app(words)
    module_name, _, attribute = target.partition(":")

    application = getattr(importlib.import_module(module_name), attribute or "application")

    assert callable(application)
    assert f"{module_name}.{attribute}" == settings.ASGI_APPLICATION
    assert option_value(words, "--bind", "-b") == "0.0.0.0:8000"
    worker_class = option_value(words, "--worker-class", "-k")
    assert worker_class == "homepot.web_worker.Worker"
    assert issubclass(symbol_by_name(worker_class), UvicornWorker)
    # A graceful stop lets the longest long poll finish.
    assert int(option_value(words, "--graceful-timeout")) > settings.LONG_POLL_MAX_SECONDS
    # The web service publishes the port gunicorn binds.
    assert "8000:8000" in [interpolate(str(port)) for port in services()["web"]["ports"]]


def test_celery_commands_load_the_project_app_and_its_scheduler() -> None:
    for name, subcommand in (("worker", "worker"), ("beat", "beat")):
        words = service_command(name)
        assert Path(words[0]).name == "celery", name
        assert subcommand in words, name

        module = importlib.import_module(option_value(words, "-A", "--app"))

        assert isinstance(module.app, Celery), name
    # The worker knows every task beat schedules.
    app = importlib.import_module("celery_app").app
    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry["task"]

    scheduler_path = option_value(service_command("beat"), "--scheduler", "-S")
    scheduler = symbol_by_name(scheduler_path)

    assert isinstance(scheduler, type) and issubclass(scheduler, Scheduler)
    assert scheduler_path == settings.CELERY_BEAT_SCHEDULER


def test_healthchecks_probe_the_health_urls_on_the_gunicorn_port() -> None:
    image_probe = probe_url(image_healthcheck())
    web_probe = probe_url(services()["web"]["healthcheck"]["test"])

    assert image_probe == "http://127.0.0.1:8000/health"
    assert resolve(image_probe.removeprefix("http://127.0.0.1:8000")).func is health.liveness
    assert web_probe == "http://127.0.0.1:8000/health/ready"
    assert resolve(web_probe.removeprefix("http://127.0.0.1:8000")).func is health.readiness


# --- Dockerfile -------------------------------------------------------------------------


def test_dockerfile_runs_python_311_slim_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    stage = final_stage()

    for keyword, arguments in instructions:
        if keyword == "FROM":
            assert arguments.split()[0] == "python:3.11-slim", arguments
    users = [arguments for keyword, arguments in stage if keyword == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert users[-1] == "homepot"
    # USER comes before the process starts, and after anything needing root.
    keywords = [keyword for keyword, _ in stage]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    assert ("EXPOSE", "8000") in stage


def test_dockerfile_environment_selects_the_project_settings() -> None:
    env = " ".join(arguments for keyword, arguments in final_stage() if keyword == "ENV")

    assert "DJANGO_SETTINGS_MODULE=homepot.settings" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert os.environ.get("DJANGO_SETTINGS_MODULE", "homepot.settings") == "homepot.settings"


def test_dockerfile_cmd_and_compose_web_serve_the_same_asgi_module() -> None:
    image_words = command_words(image_cmd())

    assert gunicorn_app(image_words) == "homepot.asgi:application"
    assert gunicorn_app(service_command("web")) == gunicorn_app(image_words)
    # Worker count comes from WEB_CONCURRENCY at start-up, through a shell.
    assert image_cmd()[:2] == ["sh", "-c"] and image_cmd()[2].startswith("exec gunicorn ")
    assert option_value(image_words, "--workers", "-w") == "${WEB_CONCURRENCY:-3}"


def test_build_time_collectstatic_works_with_only_the_throwaway_key(tmp_path: Path) -> None:
    runs = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN"]
    matches = [
        re.search(r"((?:\w+=\S+\s+)*)python manage\.py collectstatic --noinput", run)
        for run in runs
    ]
    found = [match for match in matches if match]
    assert len(found) == 1, "expected one collectstatic RUN"
    build_env = dict(assignment.split("=", 1) for assignment in found[0].group(1).split())
    assert build_env == {"SECRET_KEY": "build-only"}

    # As in the image build: DEBUG off, no database or Redis configured, only that key.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS"}
    }
    env |= build_env | {
        "DJANGO_SETTINGS_MODULE": "homepot.settings",
        "HOMEPOT_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "static file" in result.stdout


OFFLINE_DOCS_PROBE = """
import json, re, django
django.setup()
from django.core.management import call_command
from django.test import Client
from django.test.utils import override_settings

with override_settings(STATIC_ROOT={static_root!r}):
    call_command("collectstatic", "--noinput", verbosity=0)
    client = Client()
    page = client.get("/api/docs", HTTP_HOST="localhost")
    html = page.content.decode()
    assets = re.findall(r'<(?:script|link)[^>]*?(?:src|href)="([^"]+)"', html)
    served = {{}}
    for asset in assets:
        response = client.get(asset.replace("&amp;", "&"), HTTP_HOST="localhost")
        served[asset] = response.status_code
print(json.dumps({{"status": page.status_code, "csp": page.headers.get("Content-Security-Policy"),
                  "html": html, "served": served}}))
"""


def test_the_image_serves_the_api_docs_without_internet(tmp_path: Path) -> None:
    # As in the image: DEBUG off, static files collected (hashed names) and served by whitenoise.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL"}
    }
    env |= {
        "SECRET_KEY": "docs-offline",
        "DJANGO_SETTINGS_MODULE": "homepot.settings",
        "HOMEPOT_VAR_DIR": str(tmp_path / "var"),
    }

    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_DOCS_PROBE.format(static_root=str(tmp_path / "static"))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["status"] == 200
    assert "script-src 'self'" in probe["csp"]
    assert not re.search(r"(?:src|href)=[\"'](?:https?:)?//", probe["html"])
    bundles = [asset for asset in probe["served"] if "swagger-ui-bundle" in asset]
    assert bundles and bundles[0].startswith("/static/drf_spectacular_sidecar/")
    assert set(probe["served"].values()) == {200}, probe["served"]


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    version = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30
    )
    if version.returncode != 0:
        pytest.skip("docker compose is not available")
    env = os.environ | {"SECRET_KEY": "compose-config-test", "POSTGRES_PASSWORD": "pw"}

    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr

    # Without the secrets compose refuses, naming the missing variable.
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "POSTGRES_PASSWORD"}}
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr or "SECRET_KEY" in result.stderr
