"""The process bench/lab_footprint.py measures: the real agent (``build_agent``,
its run loop) with all four lab collectors, their buses simulated.

BME680 and MCP3424 are the register-level simulations of tests/agent/i2c_sim.py
behind Adafruit's and our own drivers; the MLX90640 is an object with the
driver's getFrame (a warm spot that drifts); the PSU is a real serial line (a
pty) to the SCPI emulator, which runs in another process so its work is not
counted as the agent's.

    python bench/lab_agent.py --config AGENT.TOML
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from homepot_agent import cli  # noqa: E402
from homepot_agent.runtime import build_agent  # noqa: E402

from tests.agent.i2c_sim import SimBme680, SimI2C, SimMcp3424, SimSMBus  # noqa: E402


class DriftingCamera:
    """getFrame as Adafruit's MLX90640 driver has it: 768 °C values, row by row."""

    def __init__(self) -> None:
        self.frames = 0

    def getFrame(self, framebuf: list[float]) -> None:  # noqa: N802 - the driver's name
        self.frames += 1
        x = 16 + 8 * math.sin(self.frames / 40)
        y = 12 + 6 * math.cos(self.frames / 55)
        for index in range(768):
            row, col = divmod(index, 32)
            framebuf[index] = 22.0 + 14.0 * math.exp(-((col - x) ** 2 + (row - y) ** 2) / 18.0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args()
    config = cli._registered(args.config)
    buses = {
        "bme680": SimI2C({0x76: SimBme680()}),
        "mcp3424": SimSMBus({0x68: SimMcp3424({1: 1.2, 2: 0.05})}),
        "mlx90640": DriftingCamera(),
    }
    agent = build_agent(config, api_key=cli.read_key(config), lab_buses=buses)
    cli.run_until_signalled(agent, config)
    print(f"frames taken: {buses['mlx90640'].frames}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
