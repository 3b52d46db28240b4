from django.core.management.base import BaseCommand, CommandError, CommandParser

from devices.ssh.identity import server_key_generate, server_key_path, server_public_key
from devices.ssh.transport import SshError


class Command(BaseCommand):
    help = (
        "Create the server's SSH key (HOMEPOT_SSH_KEY_FILE) if it is missing and print its "
        "public line for the targets' authorized_keys (where it is stored goes to stderr)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="replace an existing key (every target must then authorise the new one)",
        )
        parser.add_argument("--comment", default="", help="default: homepot@<this host>")

    def handle(self, *args: object, force: bool, comment: str, **options: object) -> None:
        path = server_key_path()
        try:
            if path.exists() and not force:
                line = server_public_key(comment or None)
                where = f"The existing key in {path} (--force replaces it)."
            else:
                line = server_key_generate(path, force=force, comment=comment)
                where = f"New key stored in {path}."
        except (SshError, OSError) as error:
            raise CommandError(str(error)) from None
        self.stdout.write(line)
        self.stderr.write(where)
