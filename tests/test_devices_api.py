"""GET /api/v1/devices and GET /api/v1/devices/{device_id}"""

from devices.models import Device


def ids(response) -> list[str]:
    return [d["device_id"] for d in response.json()["results"]]


def test_a_viewer_lists_devices_in_constant_queries(
    client, viewer, make_agent, django_assert_num_queries
):
    for n in range(5):
        make_agent(f"pi-{n}")
    client.force_authenticate(viewer)

    # the viewer's user and group permissions, the count, the page with its
    # sites joined: nothing per device
    with django_assert_num_queries(4):
        response = client.get("/api/v1/devices")

    assert response.status_code == 200
    assert response.json()["count"] == 5


def test_devices_filter_by_site_status_and_type(client, viewer, make_agent, other_site):
    make_agent("pi-1")
    make_agent("pos-1", device_type="pos_terminal")
    make_agent("pi-2", site_public_id="lab-2")
    Device.objects.filter(public_id="pi-2").update(status="online")
    client.force_authenticate(viewer)

    assert ids(client.get("/api/v1/devices?site=lab-1")) == ["pi-1", "pos-1"]
    assert ids(client.get("/api/v1/devices?status=online")) == ["pi-2"]
    assert ids(client.get("/api/v1/devices?device_type=pos_terminal")) == ["pos-1"]
    assert ids(client.get("/api/v1/devices?q=pos")) == ["pos-1"]


def test_an_unknown_filter_value_is_400(client, viewer, agent):
    client.force_authenticate(viewer)

    response = client.get("/api/v1/devices?status=sleepy")

    assert response.status_code == 400
    assert "status" in response.json()


def test_devices_are_paginated(client, viewer, make_agent):
    for n in range(3):
        make_agent(f"pi-{n}")
    client.force_authenticate(viewer)

    first = client.get("/api/v1/devices?page_size=2").json()

    assert len(first["results"]) == 2
    assert first["next"] is not None


def test_a_device_detail(client, viewer, agent):
    client.force_authenticate(viewer)

    body = client.get("/api/v1/devices/pi-1").json()

    assert body["site"] == "lab-1"
    assert body["checkin_interval_seconds"] == 60
    assert client.get("/api/v1/devices/ghost").status_code == 404


def test_devices_cannot_read_the_fleet(client, agent):
    assert client.get("/api/v1/devices", **agent.headers).status_code == 401
