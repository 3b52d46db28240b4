"""Names: each model reads as a person would say it, the admin lists that show
them do not pay a query per row for it, and the public ids' rename is a
change of names only (no SQL)."""

from datetime import UTC, datetime

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from analytics.models import MetricName, Sample
from commands.models import Command, CommandGroup
from devices.models import AuditEntry, DeviceCredential, EnrollmentToken, Event, Site
from devices.services import enrollment_token_create

PROJECT_APPS = {"devices", "commands", "analytics"}


@pytest.fixture
def browser(admin_user) -> Client:
    browser = Client()
    browser.force_login(admin_user)
    return browser


def test_a_site_a_device_and_its_key_read_as_people_say_them(make_agent):
    agent = make_agent("pi-lab-01")
    credential = DeviceCredential.objects.get(device=agent.device)

    assert str(Site.objects.get()) == "Lab 1 (lab-1)"
    assert str(agent.device) == "pi-lab-01 (Lab 1)"
    assert str(credential) == f"key {credential.key_id} of pi-lab-01"


def test_an_enrollment_token_reads_with_its_label_and_site(site):
    labelled = enrollment_token_create(actor=None, site=site, label="bench").enrollment
    unlabelled = enrollment_token_create(actor=None, site=site).enrollment

    assert str(labelled) == "enrollment token 'bench' for lab-1"
    assert str(unlabelled) == "enrollment token for lab-1"


def test_events_name_their_device(make_agent):
    agent = make_agent("pi-lab-01")

    registered = Event.objects.get(device=agent.device, kind="device.registered")

    assert str(registered) == "device.registered pi-lab-01"
    assert str(Event(kind="fleet.note")) == "fleet.note"


def test_commands_their_groups_and_audit_entries_read_as_people_say_them(
    make_agent, enqueue, operator
):
    agent = make_agent("pi-lab-01")
    command = enqueue(agent, "ping")
    entry = AuditEntry.objects.get(action="command.queue")

    assert str(command) == "ping on pi-lab-01 (queued)"
    assert str(entry) == f"otto command.queue command {command.public_id}"
    assert str(CommandGroup(command_type="ping", target={"device_ids": ["a", "b"]})) == (
        "ping on 2 devices"
    )
    assert str(CommandGroup(command_type="reboot", target={"site": "lab-1"})) == (
        "reboot on site lab-1"
    )


def changelist_queries(browser: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert browser.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    "url",
    [
        "/admin/devices/event/",
        "/admin/commands/command/",
        "/admin/devices/enrollmenttoken/",
        "/admin/devices/device/",
    ],
)
def test_admin_lists_name_their_rows_without_a_query_per_row(
    browser, make_agent, enqueue, site, url
):
    def add_rows(first: int, count: int) -> None:
        for n in range(first, first + count):
            enqueue(make_agent(f"pi-{n}"), "ping")
            enrollment_token_create(actor=None, site=site, label=f"t{n}")

    add_rows(0, 2)
    few = changelist_queries(browser, url)
    add_rows(2, 8)
    many = changelist_queries(browser, url)

    assert Command.objects.count() == 10 and EnrollmentToken.objects.count() == 10
    assert many == few


def test_no_field_shares_its_name_with_a_foreign_key():
    """`device_id` on a model is a device's primary key, never its public id."""
    models = [m for m in apps.get_models() if m._meta.app_label in PROJECT_APPS]
    key_names = {f.attname for m in models for f in m._meta.concrete_fields if f.is_relation}

    clashes = {
        f"{model.__name__}.{field.name}"
        for model in models
        for field in model._meta.concrete_fields
        if not field.is_relation and field.name in key_names
    }

    assert clashes == set()


@pytest.mark.parametrize("app", ["devices", "commands"])
def test_renaming_the_public_ids_is_a_change_of_names_only(transactional_db, capsys, app):  # noqa: ANN001
    call_command("sqlmigrate", app, "0004")

    statements = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.strip() and not line.startswith("--") and line not in ("BEGIN;", "COMMIT;")
    ]
    assert statements == []


def test_telemetry_rows_name_their_metric_and_device(make_agent):
    agent = make_agent("pi-lab-01")
    metric = MetricName.objects.create(name="cpu_percent")
    ts = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    sample = Sample.objects.create(device=agent.device, metric=metric, ts=ts, value=12.5)

    assert str(sample) == "cpu_percent of pi-lab-01 at 2026-01-02 03:04:05: 12.5"
