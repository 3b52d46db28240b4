from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from commands.contract import CONTRACT_PATH, contract_text


class Command(BaseCommand):
    help = (
        "Write the agent-server contract (command types and their payload rules, the "
        "service-name and metric-name patterns) to the agent's contract.json."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--path", type=Path, default=CONTRACT_PATH, help="file to write")
        parser.add_argument(
            "--check",
            action="store_true",
            help="write nothing; fail if the file differs from the server's definitions",
        )

    def handle(self, *args: object, path: Path, check: bool, **options: object) -> None:
        text = contract_text()
        if check:
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            if current != text:
                raise CommandError(f"{path} is stale: run 'manage.py homepot_contract'.")
            self.stdout.write(f"{path} is up to date.")
            return
        path.write_text(text, encoding="utf-8")
        self.stdout.write(f"Wrote {path}.")
