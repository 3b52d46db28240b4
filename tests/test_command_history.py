"""GET /api/v1/devices/{device_id}/commands and GET /api/v1/commands/{command_id}"""


def test_a_viewer_reads_a_devices_history_in_constant_queries(
    client, viewer, agent, enqueue, django_assert_num_queries
):
    for _ in range(4):
        enqueue(agent)
    client.force_authenticate(viewer)

    # permissions (2), the device, the count, the page with its joins
    with django_assert_num_queries(5):
        response = client.get("/api/v1/devices/pi-1/commands")

    assert response.status_code == 200
    assert response.json()["count"] == 4


def test_history_filters_by_status_and_type(client, viewer, agent, enqueue):
    enqueue(agent, "ping")
    enqueue(agent, "reboot")
    client.get("/api/v1/devices/pending", **agent.headers)
    enqueue(agent, "ping")
    client.force_authenticate(viewer)

    queued = client.get("/api/v1/devices/pi-1/commands?status=queued").json()["results"]
    pings = client.get("/api/v1/devices/pi-1/commands?command_type=ping").json()["results"]

    assert [c["command_type"] for c in queued] == ["ping"]
    assert len(pings) == 2
    assert client.get("/api/v1/devices/pi-1/commands?status=bogus").status_code == 400


def test_a_command_reads_back_with_its_lifecycle(client, viewer, agent, enqueue):
    command = enqueue(agent)
    client.get("/api/v1/devices/pending", **agent.headers)
    client.force_authenticate(viewer)

    body = client.get(f"/api/v1/commands/{command.public_id}").json()

    assert body["status"] == "delivered"
    assert body["delivered_at"] is not None and body["created_by"] == "otto"


def test_unknown_device_or_command_is_404(client, viewer, site):
    client.force_authenticate(viewer)

    assert client.get("/api/v1/devices/ghost/commands").status_code == 404
    assert client.get("/api/v1/commands/00000000-0000-0000-0000-000000000000").status_code == 404
