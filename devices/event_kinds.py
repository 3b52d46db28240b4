"""Every kind of event the server writes, with what it means.

One registry for the writers (devices.events refuses an unregistered kind), the
event feed's `kind` filter and its OpenAPI enum, and the README. A test reads the
source of every writer and fails on a kind missing here
(tests/test_event_kinds.py).

Kinds are dotted: `<family>.<what happened>`. A feed filter may name a whole
family as `<family>.*`.
"""

# The command states (commands.models.Status) as `command.<state>` kinds: devices
# does not import commands, so they are listed here and a test keeps them equal.
COMMAND_STATES = {
    "queued": "a command was queued for its device",
    "delivered": "the device took a command when it polled",
    "in_progress": "the device acknowledged a command: it is running",
    "succeeded": "the device reported a command's success",
    "failed": "the device reported a command's failure",
    "rejected": "the device refused a command",
    "timed_out": "a command was not acknowledged or finished in time",
    "expired": "a command was not delivered before it expired",
    "canceled": "an operator canceled a command",
}

EVENT_KINDS: dict[str, str] = {
    # Devices
    "device.registered": "a device was registered (by enrollment token, operator or SSH target)",
    "device.online": "a device checked in after being new or offline",
    "device.offline": "a device missed its check-in interval plus the grace",
    "device.decommissioned": "a device was decommissioned: its keys revoked, its id reserved",
    "device.identity_conflict": "two agent instances take turns on one device identity",
    # Commands: one per state a command enters
    **{f"command.{state}": meaning for state, meaning in COMMAND_STATES.items()},
    # Agentless targets over SSH
    "ssh.check_failed": "a target's round of checks failed (it had been passing)",
    "ssh.check_recovered": "a target's checks pass again after failing",
    "ssh.circuit_opened": "too many failed rounds in a row: checks pause for the cooldown",
    "ssh.host_key_mismatch": "a target offered a host key other than the pinned one",
    "ssh.host_key_accepted": "an operator pinned the host key a target offered",
    # Alerts
    "alert.fired": "a rule's condition held for a device: an alert opened",
    "alert.reminder": "an alert is still firing, unacknowledged: a reminder was sent",
    "alert.acknowledged": "an operator acknowledged an alert",
    "alert.resolved": "an alert resolved (by itself or by an operator)",
    "alert.silenced": "a transition of an alert notified no one: silences cover it",
}

EVENT_FAMILIES: tuple[str, ...] = tuple(sorted({kind.split(".")[0] for kind in EVENT_KINDS}))


def event_kinds_expand(names: list[str]) -> list[str]:
    """The kinds a filter names: kinds, or families as `<family>.*`. Raises
    ValueError naming the first name that is neither."""
    kinds: list[str] = []
    for name in names:
        if name in EVENT_KINDS:
            kinds.append(name)
        elif name.endswith(".*") and name[:-2] in EVENT_FAMILIES:
            kinds += [kind for kind in EVENT_KINDS if kind.startswith(name[:-1])]
        else:
            raise ValueError(f"Unknown event kind {name!r}.")
    return sorted(set(kinds))


def event_kind_filter_values() -> list[str]:
    """What the feed's `kind` filter accepts: every kind and every `<family>.*`."""
    return [*EVENT_KINDS, *(f"{family}.*" for family in EVENT_FAMILIES)]
