"""POST /api/v1/commands/bulk and GET /api/v1/command-groups/{group_id}"""

import pytest

from commands.models import Command, CommandGroup

URL = "/api/v1/commands/bulk"


@pytest.fixture
def fleet(make_agent, other_site) -> dict:
    return {
        "pi-1": make_agent("pi-1"),
        "pi-2": make_agent("pi-2"),
        "pos-1": make_agent("pos-1", device_type="pos_terminal"),
        "far-1": make_agent("far-1", site_public_id="lab-2"),
    }


def bulk(client, body, **headers):
    return client.post(URL, body, format="json", **headers)


def test_one_command_per_listed_device(client, operator, fleet):
    client.force_authenticate(operator)

    response = bulk(client, {"command_type": "ping", "device_ids": ["pi-1", "far-1"]})

    assert response.status_code == 201
    body = response.json()
    assert body["counts"]["queued"] == 2
    assert sorted(Command.objects.values_list("device__public_id", flat=True)) == ["far-1", "pi-1"]


def test_a_site_filtered_by_device_type(client, operator, fleet):
    client.force_authenticate(operator)

    response = bulk(
        client,
        {
            "command_type": "restart_service",
            "payload": {"service": "pos"},
            "site": "lab-1",
            "device_type": "pos_terminal",
        },
    )

    assert response.status_code == 201
    assert list(Command.objects.values_list("device__public_id", flat=True)) == ["pos-1"]


def test_the_group_reads_back_with_per_state_counts(client, operator, fleet):
    client.force_authenticate(operator)
    group_id = bulk(client, {"command_type": "ping", "site": "lab-1"}).json()["group_id"]
    client.force_authenticate(None)
    client.get("/api/v1/devices/pending", **fleet["pi-1"].headers)
    client.force_authenticate(operator)

    body = client.get(f"/api/v1/command-groups/{group_id}").json()

    assert body["counts"]["queued"] == 2
    assert body["counts"]["delivered"] == 1
    assert body["target"] == {"site": "lab-1"}


def test_an_idempotency_key_makes_one_group(client, operator, fleet):
    client.force_authenticate(operator)
    body = {"command_type": "ping", "site": "lab-1"}

    first = bulk(client, body, HTTP_IDEMPOTENCY_KEY="k")
    retry = bulk(client, body, HTTP_IDEMPOTENCY_KEY="k")

    assert (first.status_code, retry.status_code) == (201, 200)
    assert CommandGroup.objects.count() == 1
    assert Command.objects.count() == 3


@pytest.mark.parametrize(
    "other",
    [
        {"command_type": "reboot", "site": "lab-1"},
        {"command_type": "ping", "device_ids": ["pi-1"]},
        {"command_type": "ping", "site": "lab-1", "device_type": "pos_terminal"},
    ],
    ids=["other-command", "other-target", "narrower-target"],
)
def test_an_idempotency_key_reused_with_another_body_is_422(client, operator, fleet, other):
    client.force_authenticate(operator)
    assert (
        bulk(
            client, {"command_type": "ping", "site": "lab-1"}, HTTP_IDEMPOTENCY_KEY="k"
        ).status_code
        == 201
    )

    reused = bulk(client, other, HTTP_IDEMPOTENCY_KEY="k")

    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert CommandGroup.objects.count() == 1
    assert Command.objects.count() == 3


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"command_type": "ping"}, 400),
        ({"command_type": "ping", "site": "lab-1", "device_ids": ["pi-1"]}, 400),
        ({"command_type": "ping", "device_ids": ["pi-1"], "device_type": "x"}, 400),
        ({"command_type": "ping", "device_ids": ["pi-1", "ghost"]}, 404),
        ({"command_type": "ping", "site": "empty-site"}, 400),
        ({"command_type": "nope", "site": "lab-1"}, 400),
    ],
)
def test_bad_bulk_requests_queue_nothing(client, operator, fleet, body, status):
    client.force_authenticate(operator)

    assert bulk(client, body).status_code == status
    assert not Command.objects.exists()


def test_a_viewer_cannot_queue_in_bulk(client, viewer, fleet):
    client.force_authenticate(viewer)

    assert bulk(client, {"command_type": "ping", "site": "lab-1"}).status_code == 403
