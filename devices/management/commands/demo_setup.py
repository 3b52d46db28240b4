import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser

from devices import services
from devices.models import Site
from homepot.roles import ADMIN


class Command(BaseCommand):
    help = "Prepare the embedded demo: a demo site and, once, a 'demo' admin (password printed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--site", default="demo-lab")
        parser.add_argument(
            "--token-file", help="write a fresh enrollment token for the demo site to this file"
        )

    def handle(self, *args: object, site: str, token_file: str | None, **options: object) -> None:
        user_model = get_user_model()
        if not user_model.objects.filter(username="demo").exists():
            password = secrets.token_urlsafe(12)
            user = user_model.objects.create_user("demo", password=password, is_staff=True)
            user.groups.set([Group.objects.get(name=ADMIN)])
            self.stdout.write(
                self.style.SUCCESS(f"Demo login: user 'demo', password '{password}' (shown once)")
            )
        demo_site, _ = Site.objects.get_or_create(
            public_id=site, defaults={"name": "Demo lab", "location": "this machine"}
        )
        if token_file:
            issued = services.enrollment_token_create(
                actor=None, site=demo_site, max_uses=1000, label="demo fleet"
            )
            with open(token_file, "w") as handle:
                handle.write(issued.token)
