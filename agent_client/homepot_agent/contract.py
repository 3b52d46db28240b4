"""What the server accepts, as the server exported it (``contract.json``).

The command types with their payload fields, the service-name pattern and the
metric-name pattern are defined once on the server; ``manage.py
homepot_contract`` writes them into this package. The agent reads them here
instead of keeping copies of its own; ``problems()`` lists where what the
agent implements differs from the file (the server's tests run it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

CONTRACT_FILE = Path(__file__).with_name("contract.json")


def load(path: Path = CONTRACT_FILE) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def full_match(pattern: str) -> re.Pattern[str]:
    """``pattern`` as a whole string: works with both ``match`` and ``fullmatch``."""
    return re.compile(rf"^(?:{pattern})\Z")


CONTRACT = load()
COMMAND_TYPES: list[str] = list(CONTRACT["command_types"])
SERVICE_NAME = full_match(CONTRACT["service_name_pattern"])
METRIC_NAME = full_match(CONTRACT["metric_name_pattern"])


def payload_keys(contract: dict[str, Any] = CONTRACT) -> dict[str, tuple[str, ...]]:
    """Command type -> the payload fields it accepts."""
    return {name: tuple(rules["payload"]) for name, rules in contract["command_types"].items()}
