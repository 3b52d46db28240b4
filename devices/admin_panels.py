"""What other apps add to the device page of the admin: panels and actions.

`devices` sits below `commands` and `analytics` and must not import them. They
register here instead, from their own admin modules (which the admin imports at
start-up), and DeviceAdmin reads the registry on every request, so the order in
which the apps load does not matter.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from devices.models import Device

PanelContext = Callable[[HttpRequest, Device], dict[str, Any]]
DeviceAction = Callable[..., Any]  # an admin action: (modeladmin, request, queryset)


@dataclass(frozen=True)
class DevicePanel:
    """A fieldset on the device page: `template` rendered with `context(request, device)`
    as `panel`, for users who hold `permission` (what the panel shows is another
    app's data: seeing a device does not imply seeing it)."""

    name: str
    template: str
    context: PanelContext
    permission: str


@dataclass(frozen=True)
class RenderedPanel:
    template: str
    context: dict[str, Any]


# Keyed by name, so registering twice (a re-imported module) replaces, not duplicates.
_panels: dict[str, DevicePanel] = {}
_actions: dict[str, DeviceAction] = {}


def device_panel_register(
    *, name: str, template: str, context: PanelContext, permission: str
) -> None:
    _panels[name] = DevicePanel(
        name=name, template=template, context=context, permission=permission
    )


def device_actions_register(*actions: DeviceAction) -> None:
    """Admin actions on selected devices (their permissions are checked as usual)."""
    _actions.update((action.__name__, action) for action in actions)


def device_panels_render(request: HttpRequest, device: Device) -> list[RenderedPanel]:
    return [
        RenderedPanel(template=panel.template, context=panel.context(request, device))
        for panel in _panels.values()
        if request.user.has_perm(panel.permission)
    ]


def device_actions() -> list[DeviceAction]:
    return list(_actions.values())
