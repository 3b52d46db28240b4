"""homepot-agent: register, run, status, collect --once, simulate."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from homepot_agent import __version__
from homepot_agent.config import (
    DEFAULT_CONFIG_PATH,
    AgentConfig,
    ConfigError,
    load_config,
    save_config,
    validate,
)
from homepot_agent.files import private_dir
from homepot_agent.transport import ApiClient, Refused, Unreachable, wait_for_server

if TYPE_CHECKING:
    from homepot_agent.agent import Agent

EXIT_OK, EXIT_CONFIG, EXIT_UNREACHABLE, EXIT_REFUSED = 0, 2, 3, 4
logger = logging.getLogger("homepot_agent")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homepot-agent", description=__doc__)
    parser.add_argument("--config", type=Path, help=f"TOML file (default {DEFAULT_CONFIG_PATH})")
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    register = sub.add_parser("register", help="enroll this machine (once)")
    register.add_argument("--server", required=True, help="e.g. https://fleet.example.com")
    register.add_argument("--site", required=True)
    register.add_argument("--token", required=True, help="the site's enrollment token")
    register.add_argument("--device-id", default=socket.gethostname())
    register.add_argument("--name")
    register.add_argument("--type", default="raspberry_pi", dest="device_type")
    register.add_argument("--state-dir", type=Path, help="where the key and spool live")
    register.add_argument("--force", action="store_true", help="register again, replacing the key")
    register.add_argument(
        "--wait", type=float, default=0, metavar="SECONDS", help="wait this long for the server"
    )

    run = sub.add_parser("run", help="the daemon")
    run.add_argument(
        "--long-poll-seconds",
        type=int,
        metavar="SECONDS",
        help="the longest wait a poll asks for (default: long_poll_seconds, 30); 0: plain polls",
    )
    sub.add_parser("status", help="identity, server, spool, quarantine, last push and poll")
    quarantine = sub.add_parser("quarantine", help="batches the server refused for good")
    quarantine.add_argument(
        "--requeue", action="store_true", help="move them back to the spool to be sent again"
    )
    collect = sub.add_parser("collect", help="print one sample as JSON")
    collect.add_argument("--once", action="store_true", required=True)

    simulate = sub.add_parser("simulate", help="N simulated devices in one process")
    simulate.add_argument("--server", required=True)
    simulate.add_argument("--site", required=True)
    simulate.add_argument("--token", required=True)
    simulate.add_argument("--count", type=int, default=10)
    simulate.add_argument("--state-dir", type=Path, default=Path("var/simulated"))
    simulate.add_argument("--interval", type=float, default=10.0, help="collect/poll seconds")
    simulate.add_argument(
        "--lab-share",
        type=float,
        default=0.25,
        metavar="FRACTION",
        help="this share of the devices are lab monitors (at least one unless 0)",
    )
    simulate.add_argument(
        "--wait", type=float, default=0, metavar="SECONDS", help="wait this long for the server"
    )
    simulate.add_argument(
        "--allow-insecure-http", action="store_true", help="plain http to another host"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    config_path = args.config or Path(os.environ.get("HOMEPOT_AGENT_CONFIG", DEFAULT_CONFIG_PATH))
    try:
        return COMMANDS[args.command](args, config_path)
    except ConfigError as exc:
        print(f"homepot-agent: configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Unreachable as exc:
        print(f"homepot-agent: server unreachable: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except Refused as exc:
        print(
            f"homepot-agent: refused by the server: {exc.detail} (HTTP {exc.status})",
            file=sys.stderr,
        )
        return EXIT_REFUSED


def cmd_register(args: argparse.Namespace, config_path: Path) -> int:
    existing = load_config(config_path)
    if existing.device_id and existing.key_path.exists() and not args.force:
        print(
            f"homepot-agent: already registered as {existing.device_id}; use --force to replace",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    config = replace(
        existing,
        server_url=args.server,
        site_id=args.site,
        device_id=args.device_id,
        state_dir=args.state_dir or existing.state_dir,
    )
    validate(config)  # before the token goes anywhere
    client = ApiClient(config.server_url, verify=config.tls_verify())
    wait_for_server(client, args.wait)
    device = {
        "device_id": args.device_id,
        "name": args.name or args.device_id,
        "device_type": args.device_type,
    }
    registered = client.register(site_id=args.site, token=args.token, device=device)
    write_key(config.key_path, registered["api_key"])
    save_config(config, config_path)
    device_id, site = registered["device_id"], registered["site"]
    print(f"registered {device_id} at site {site}; key in {config.key_path}")
    return EXIT_OK


def write_key(path: Path, api_key: str) -> None:
    """The key file is readable by the agent's user only (0600) from its first byte."""
    private_dir(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(api_key)
    os.chmod(path, 0o600)


def read_key(config: AgentConfig) -> str:
    try:
        return config.key_path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(
            f"api key: {config.key_path} not found; run 'homepot-agent register'"
        ) from None


def _registered(config_path: Path) -> AgentConfig:
    config = load_config(config_path)
    if not config.server_url or not config.device_id:
        raise ConfigError("server_url/device_id: not set; run 'homepot-agent register' first")
    return config


def cmd_run(args: argparse.Namespace, config_path: Path) -> int:
    from homepot_agent.runtime import build_agent

    config = _registered(config_path)
    if args.long_poll_seconds is not None:
        config = replace(config, long_poll_seconds=args.long_poll_seconds)
        validate(config)
    agent = build_agent(config, api_key=read_key(config))
    logger.info(
        "homepot-agent %s running as %s against %s",
        __version__,
        config.device_id,
        config.server_url,
    )
    run_until_signalled(agent, config)
    logger.info("stopped; %d samples wait in the spool", agent.spool.depth())
    return EXIT_OK


def run_until_signalled(agent: Agent, config: AgentConfig) -> None:
    """Run the agent's loop until SIGTERM or SIGINT (which wake it at once)."""
    stop = threading.Event()

    def request_stop(*_: object) -> None:
        stop.set()
        agent.wake()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    agent.run(stop, status_path=config.state_dir / "status.json")


def cmd_status(args: argparse.Namespace, config_path: Path) -> int:
    """Identity, whether the server answers and accepts our key, spool and last push/poll."""
    config = _registered(config_path)
    client = ApiClient(
        config.server_url,
        device_id=config.device_id,
        api_key=read_key(config),
        verify=config.tls_verify(),
        timeout=5,
    )
    code, key = EXIT_OK, "accepted"
    try:
        client.heartbeat(None)  # leaves the running agent's attributes alone
    except Unreachable:
        code, key = EXIT_UNREACHABLE, "unknown (server unreachable)"
    except Refused as exc:
        code, key = EXIT_REFUSED, f"refused: {exc.detail}"
    status_file = config.state_dir / "status.json"
    status = json.loads(status_file.read_text()) if status_file.exists() else {}
    report = {
        "device_id": config.device_id,
        "site": config.site_id,
        "server": config.server_url,
        "server_reachable": code != EXIT_UNREACHABLE,
        "key": key,
        **status,
    }
    print(json.dumps(report, indent=2))
    return code


def cmd_quarantine(args: argparse.Namespace, config_path: Path) -> int:
    """What the server refused for good; --requeue sends it again (after a server fix)."""
    from homepot_agent.spool import Spool

    config = _registered(config_path)
    spool = Spool(config.spool_path, config.spool_max_samples)
    summary = spool.quarantine_summary()
    if args.requeue:
        summary["requeued_samples"] = spool.requeue_quarantine()
    spool.close()
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def cmd_collect(args: argparse.Namespace, config_path: Path) -> int:
    from homepot_agent.collectors import build_collectors, collect_all

    config = load_config(config_path) if config_path.exists() else AgentConfig()
    collectors = build_collectors(config, spool_depth=lambda: 0, last_push=lambda: None)
    print(json.dumps(collect_all(collectors), indent=2, sort_keys=True))
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace, config_path: Path) -> int:
    from homepot_agent.simulate import run_fleet

    return run_fleet(args)


COMMANDS = {
    "register": cmd_register,
    "run": cmd_run,
    "status": cmd_status,
    "quarantine": cmd_quarantine,
    "collect": cmd_collect,
    "simulate": cmd_simulate,
}


if __name__ == "__main__":
    sys.exit(main())
