"""The mlx90640 collector at the driver boundary (an object with the driver's
getFrame(list) interface): frames sent, summaries against hand-computed values,
and the live rate the server's X-Thermal-* advice sets, on an injected clock."""

from __future__ import annotations

import pytest
from homepot_agent.lab import LabContext, LabScheduler, mlx90640

from .helpers import Clock


class FakeCamera:
    """Adafruit's MLX90640 driver as the collector sees it: getFrame fills a
    768-element list with degrees Celsius (row by row, 32 per row)."""

    def __init__(self, frame: list[float]) -> None:
        self.frame = frame
        self.frames = 0
        self.broken = False

    def getFrame(self, framebuf: list[float]) -> None:  # noqa: N802 - the driver's name
        if self.broken:
            raise ValueError("Frame data error")  # what the driver raises on a bad frame
        framebuf[:] = self.frame
        self.frames += 1


def a_frame() -> list[float]:
    """20 °C everywhere, a 35.5 °C spot at column 7, row 3 and a 12 °C pixel at 31, 23."""
    frame = [20.0] * 768
    frame[3 * 32 + 7] = 35.5
    frame[23 * 32 + 31] = 12.0
    return frame


def camera_source(clock: Clock, camera: FakeCamera, sent: list, **table: object):
    settings = mlx90640.parse(table)
    context = LabContext(
        clock=clock,
        wall_clock=lambda: 1_800_000_000.0,
        send_frame=sent.append,
        buses={"mlx90640": camera},
    )
    return mlx90640.build(settings, context)


def test_a_frame_is_sent_and_summarised():
    sent: list = []
    source = camera_source(Clock(), FakeCamera(a_frame()), sent)
    source.open()

    metrics = source.read()

    # mean: (766 * 20 + 35.5 + 12) / 768 = 15367.5 / 768
    assert metrics == {
        "thermal.min": 12.0,
        "thermal.max": 35.5,
        "thermal.mean": pytest.approx(15367.5 / 768),
        "thermal.hotspot_x": 7.0,
        "thermal.hotspot_y": 3.0,
    }
    assert sent == [
        {"ts": "2027-01-15T08:00:00+00:00", "width": 32, "height": 24, "values": a_frame()}
    ]


def test_the_first_of_two_equal_hot_pixels_is_the_hot_spot():
    frame = [1.0] * 768
    frame[5 * 32 + 2] = frame[9 * 32 + 30] = 40.0

    summary = mlx90640.summary(frame)

    assert (summary["thermal.hotspot_x"], summary["thermal.hotspot_y"]) == (2.0, 5.0)


def frames_per_second(scheduler: LabScheduler, clock: Clock, camera: FakeCamera, seconds: float):
    """Frames taken in [now, now + seconds), running the scheduler when it is due."""
    before = camera.frames
    end = clock.now + seconds
    while (due := scheduler.next_due()) < end:
        clock.now = max(clock.now, due)
        scheduler.collect_due(clock.now)
    clock.now = end
    return (camera.frames - before) / seconds


def test_frames_go_fast_during_a_lease_and_slow_after_it():
    clock, camera, sent = Clock(), FakeCamera(a_frame()), []
    source = camera_source(clock, camera, sent, interval=30, refresh_rate=8)
    scheduler = LabScheduler([(source, 30.0)], clock)

    assert frames_per_second(scheduler, clock, camera, 60) == pytest.approx(2 / 60)
    scheduler.advise_thermal(interval=0.1, lease=10, now=clock.now)
    # asked for 10 Hz: capped at 4 Hz (the sensor runs at 8)
    assert frames_per_second(scheduler, clock, camera, 10) == pytest.approx(4.0, abs=0.2)
    assert frames_per_second(scheduler, clock, camera, 120) == pytest.approx(4 / 120, abs=0.01)
    assert len(sent) == camera.frames


def test_the_live_rate_is_never_faster_than_the_sensor_refreshes():
    clock, camera = Clock(), FakeCamera(a_frame())
    source = camera_source(clock, camera, [], interval=30, refresh_rate=2)
    scheduler = LabScheduler([(source, 30.0)], clock)
    scheduler.collect_due(clock.now)

    scheduler.advise_thermal(interval=0.25, lease=10, now=clock.now)

    assert scheduler.next_due() == clock.now + 0.5
    assert frames_per_second(scheduler, clock, camera, 10) == pytest.approx(2.0, abs=0.2)


def test_a_lease_renewed_keeps_the_fast_rate():
    clock, camera = Clock(), FakeCamera(a_frame())
    source = camera_source(clock, camera, [], interval=30, refresh_rate=4)
    scheduler = LabScheduler([(source, 30.0)], clock)
    scheduler.advise_thermal(interval=0.5, lease=5, now=clock.now)

    for _ in range(4):  # the server renews the lease with every answer
        frames_per_second(scheduler, clock, camera, 4)
        scheduler.advise_thermal(interval=0.5, lease=5, now=clock.now)

    assert frames_per_second(scheduler, clock, camera, 4) == pytest.approx(2.0, abs=0.3)


def test_a_bad_frame_is_thermal_up_0_and_nothing_is_sent():
    clock, camera, sent = Clock(), FakeCamera(a_frame()), []
    camera.broken = True
    source = camera_source(clock, camera, sent)

    assert LabScheduler([(source, 60.0)], clock).collect_due(clock.now) == {"mlx90640.up": 0.0}
    assert sent == []


def test_a_failing_frame_upload_does_not_take_the_camera_down():
    from homepot_agent.lab import FrameSender
    from homepot_agent.transport import Unreachable

    def refuse(frame: dict) -> None:
        raise Unreachable("no answer")

    clock, camera = Clock(), FakeCamera(a_frame())
    source = camera_source(clock, camera, [])
    source.context.send_frame = FrameSender(refuse)

    values = LabScheduler([(source, 60.0)], clock).collect_due(clock.now)

    assert values["mlx90640.up"] == 1.0 and values["thermal.max"] == 35.5


def test_refresh_rate_must_be_one_the_sensor_offers():
    with pytest.raises(ValueError, match="refresh_rate"):
        mlx90640.parse({"refresh_rate": 3})
