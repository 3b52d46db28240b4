"""The live thermal view, agent side, against a live server: while an operator's
view polls the newest frame, the real agent's MLX90640 collector sends frames at
up to 4 Hz; when the view closes and the lease runs out, it falls back to its
interval. The camera is an object with the driver's getFrame interface; the
agent runs on an injected clock, the server's lease on real time."""

from __future__ import annotations

import time
from dataclasses import replace

from homepot_agent import cli
from homepot_agent.config import load_config, validate
from homepot_agent.runtime import build_agent

from analytics.models import ThermalFrame

from .helpers import Clock
from .test_mlx90640 import FakeCamera, a_frame


def next_due(agent) -> float:
    jobs = (agent.collecting, agent.pushing, agent.polling)
    return min(min(job.due for job in jobs), agent.lab.next_due())


def run_for(agent, clock: Clock, seconds: float) -> None:
    """Run the agent's loop for ``seconds`` of its clock, each step when it is due."""
    end = clock.now + seconds
    while (due := next_due(agent)) < end:
        clock.now = max(clock.now, due)
        agent.step()
    clock.now = end


def run_until_fast(agent, clock: Clock, limit: float) -> None:
    """Run the loop until the camera's next frame is due within a second."""
    end = clock.now + limit
    while agent.lab.next_due() - clock.now >= 1.0:
        assert clock.now < end, "the agent never heard of the lease"
        clock.now = max(clock.now, next_due(agent))
        agent.step()


def watch(client, viewer) -> int:
    client.force_authenticate(viewer)
    response = client.get("/api/v1/devices/pi-e2e/thermal/latest?live=true")
    client.force_authenticate(None)
    return response.status_code


def test_frames_go_fast_while_the_view_is_open_and_slow_after(registered, client, viewer, settings):
    settings.THERMAL_LIVE_LEASE_SECONDS = 3
    settings.THERMAL_LIVE_INTERVAL_SECONDS = 0.25
    config = load_config(registered, environ={})
    config = replace(
        config,
        enabled_collectors=["agent", "mlx90640"],
        tables={"mlx90640": {"interval": 60, "refresh_rate": 4}},
    )
    validate(config)
    camera, clock = FakeCamera(a_frame()), Clock()
    agent = build_agent(
        config, api_key=cli.read_key(config), clock=clock, lab_buses={"mlx90640": camera}
    )

    run_for(agent, clock, 40)  # nobody watches: one frame at the start, then none
    assert camera.frames == 1
    assert ThermalFrame.objects.filter(device__public_id="pi-e2e").count() == 1

    assert watch(client, viewer) == 200  # the operator opens the thermal view
    watched = time.monotonic()
    run_until_fast(agent, clock, limit=30)  # the next push or poll brings the advice
    fast_start = camera.frames
    run_for(agent, clock, 2)
    fast = camera.frames - fast_start
    assert time.monotonic() - watched < 3, "too slow to measure within the server's lease"

    time.sleep(max(0.0, watched + 3.2 - time.monotonic()))  # the view is closed: lease over
    run_for(agent, clock, 5)  # the agent's copy of the lease (at most 3 s) runs out too
    slow_start = camera.frames
    run_for(agent, clock, 59)
    slow = camera.frames - slow_start

    assert 7 <= fast <= 9  # 4 Hz for two seconds
    assert slow <= 1  # back to every 60 s
    stored = ThermalFrame.objects.filter(device__public_id="pi-e2e").count()
    assert stored == min(camera.frames, settings.THERMAL_FRAMES_KEPT)
    agent.client.session.close()  # no kept-alive connection outlives the live server's test
    agent.spool.close()


def test_thermal_headers_are_read_strictly():
    from homepot_agent.transport import thermal_advice

    def advice(interval, lease):
        headers = {"X-Thermal-Interval": interval, "X-Thermal-Lease": lease}
        return thermal_advice({k: v for k, v in headers.items() if v is not None})

    assert advice("0.5", "20") == (0.5, 20.0)
    assert advice("0.01", "20") == (0.25, 20.0)  # never faster than 4 Hz
    assert advice("0.5", None) is None  # both or nothing
    assert advice(None, "20") is None
    for interval, lease in [("fast", "20"), ("0.5", "nan"), ("inf", "20"), ("-1", "20")]:
        assert advice(interval, lease) is None, (interval, lease)
    assert advice("0.5", "0") is None  # the lease is over
