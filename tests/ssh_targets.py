"""Building SSH targets for the tests of devices/ssh (runner, schedule, limits)."""

from collections.abc import Sequence

from devices.models import Device, Site, SshCheck, SshTarget, SshTargetCheck
from tests.sshd import SshServer


def check_make(name: str, command: str = "echo 1", **fields: object) -> SshCheck:
    """An operator-defined check (a single number by default)."""
    fields.setdefault("parser", SshCheck.Parser.NUMBER)
    fields.setdefault("metric_prefix", f"wet.{name}")
    fields.setdefault("timeout_seconds", 5)
    check, _ = SshCheck.objects.update_or_create(name=name, defaults={"command": command, **fields})
    return check


def target_make(
    site: Site,
    public_id: str,
    checks: Sequence[SshCheck] = (),
    *,
    server: SshServer | None = None,
    **fields: object,
) -> SshTarget:
    """A wet_board device and its target (pointing at `server` when given), with `checks`."""
    device = Device.objects.create(
        public_id=public_id, name=public_id, device_type="wet_board", site=site
    )
    if server is not None:
        fields = {
            "host": server.host,
            "port": server.port,
            "username": server.username,
            "host_key": server.host_key,
            **fields,
        }
    fields.setdefault("host", "127.0.0.1")
    fields.setdefault("username", "wet")
    target = SshTarget.objects.create(device=device, **fields)
    for check in checks:
        SshTargetCheck.objects.create(ssh_target=target, ssh_check=check)
    return target
