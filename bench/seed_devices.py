"""Create one site and N devices for the benchmark; write their keys to a file.

Run by bench/auth_bench.py with the server's environment (DATABASE_URL,
DEVICE_KEY_BCRYPT_ROUNDS, ...). Each key costs one bcrypt hash, so devices are
registered by a pool of processes. Output: one ``device_id<TAB>api_key`` line
per device.

    .venv/bin/python bench/seed_devices.py --count 200 --out /tmp/devices.tsv
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SITE_ID = "bench-site"


def _django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "homepot.settings")
    import django

    django.setup()


def _site_create() -> None:
    from devices.services import site_create

    site_create(actor=None, public_id=SITE_ID, name="Benchmark site")


def _register(public_id: str) -> tuple[str, str]:
    from devices.services import device_register

    _, issued = device_register(
        site_public_id=SITE_ID,
        actor=None,
        enrollment_token=None,
        public_id=public_id,
        name=f"Bench {public_id}",
        device_type="raspberry_pi",
    )
    return public_id, issued.api_key


def seed(count: int, out: Path, processes: int) -> None:
    _django_setup()
    _site_create()
    public_ids = [f"bench-dev-{n:05d}" for n in range(1, count + 1)]
    # spawn: every worker opens its own database connection after django.setup().
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes=processes, initializer=_django_setup) as pool:
        pairs = pool.map(_register, public_ids, chunksize=max(1, count // (processes * 4)))
    out.write_text("".join(f"{public_id}\t{api_key}\n" for public_id, api_key in pairs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    started = time.monotonic()
    seed(args.count, args.out, args.processes)
    print(f"seeded {args.count} devices in {time.monotonic() - started:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
