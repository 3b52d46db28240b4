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
from django.urls import reverse

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
    order: int  # panels show in ascending order, then in registration order


@dataclass(frozen=True)
class RenderedPanel:
    template: str
    context: dict[str, Any]


# Keyed by name, so registering twice (a re-imported module) replaces, not duplicates.
_panels: dict[str, DevicePanel] = {}
_actions: dict[str, DeviceAction] = {}


def device_panel_register(
    *, name: str, template: str, context: PanelContext, permission: str, order: int = 100
) -> None:
    """`order` places the panel whatever order the apps load in (the header first: 0)."""
    _panels[name] = DevicePanel(
        name=name, template=template, context=context, permission=permission, order=order
    )


def device_actions_register(*actions: DeviceAction) -> None:
    """Admin actions on selected devices (their permissions are checked as usual)."""
    _actions.update((action.__name__, action) for action in actions)


def device_panels_render(request: HttpRequest, device: Device) -> list[RenderedPanel]:
    return [
        RenderedPanel(template=panel.template, context=panel.context(request, device))
        for panel in sorted(_panels.values(), key=lambda panel: panel.order)
        if request.user.has_perm(panel.permission)
    ]


def device_panel_render(request: HttpRequest, device: Device, name: str) -> RenderedPanel | None:
    """One panel alone (the page polls it to stay live), or None: no such panel, or
    not for this user."""
    panel = _panels.get(name)
    if panel is None or not request.user.has_perm(panel.permission):
        return None
    return RenderedPanel(template=panel.template, context=panel.context(request, device))


def device_panel_url(device: Device, name: str, query: str = "") -> str:
    """Where the device page fetches panel `name` alone (DeviceAdmin.panel_view)."""
    url = reverse("admin:devices_device_panel", args=[device.pk, name])
    return f"{url}?{query}" if query else url


def device_actions() -> list[DeviceAction]:
    return list(_actions.values())
