from django.apps import AppConfig
from django.db.models.signals import post_migrate


class DevicesConfig(AppConfig):
    name = "devices"
    verbose_name = "Fleet"

    def ready(self) -> None:
        from devices import schema  # noqa: F401  (registers the OpenAPI auth extension)
        from homepot.roles import roles_sync

        post_migrate.connect(roles_sync, dispatch_uid="homepot-roles-sync")
        from devices.ssh.checks import ssh_checks_builtin_sync

        post_migrate.connect(
            ssh_checks_builtin_sync, sender=self, dispatch_uid="homepot-ssh-checks-builtin-sync"
        )
