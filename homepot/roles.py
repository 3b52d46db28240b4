"""The three operator roles and their permissions, kept in sync after every migrate."""

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"

_VIEW = [
    "view_site",
    "view_device",
    "view_event",
    "view_auditentry",
    "view_enrollmenttoken",
    "view_command",
    "view_commandgroup",
    "view_sample",
    "view_thermalframe",
    "view_sshtarget",
    "view_sshtargetcheck",
    "view_sshcheck",
    "view_alertrule",
    "view_alert",
    "view_silence",
    "view_notificationchannel",
    "view_notificationdelivery",
]
ROLE_PERMISSIONS: dict[str, list[str]] = {
    VIEWER: _VIEW,
    OPERATOR: [
        *_VIEW,
        "add_site",
        "change_site",
        "add_device",
        "change_device",
        "add_enrollmenttoken",
        "change_enrollmenttoken",
        "rotate_key",
        "revoke_key",
        "decommission",
        "add_command",
        "cancel_command",
        # SSH targets: change_sshtarget also runs a check now and accepts an offered
        # host key; deleting one decommissions its device (needs decommission too).
        "add_sshtarget",
        "change_sshtarget",
        "delete_sshtarget",
        "add_sshtargetcheck",
        "change_sshtargetcheck",
        "delete_sshtargetcheck",
        "add_sshcheck",
        "change_sshcheck",
        # Alerting: change_alert acknowledges and resolves alerts.
        "add_alertrule",
        "change_alertrule",
        "delete_alertrule",
        "change_alert",
        "add_silence",
        "delete_silence",
        "add_notificationchannel",
        "change_notificationchannel",
        "delete_notificationchannel",
    ],
}
# Admins may do everything in HOMEPOT's apps and manage users.
ADMIN_APPS = ["devices", "commands", "analytics", "auth", "knox", "axes", "django_celery_beat"]


def roles_sync(**kwargs: Any) -> None:
    app_perms = Permission.objects.filter(
        content_type__app_label__in=["devices", "commands", "analytics"]
    )
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(app_perms.filter(codename__in=codenames))
    admin, _ = Group.objects.get_or_create(name=ADMIN)
    admin.permissions.set(Permission.objects.filter(Q(content_type__app_label__in=ADMIN_APPS)))
