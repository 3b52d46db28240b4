import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from homepot.api_tokens import api_token_issue, api_token_revoke_all, default_expiry
from homepot.roles import ADMIN, OPERATOR, VIEWER


class Command(BaseCommand):
    help = "Create or update an operator account with a role; prints its new password once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", choices=[VIEWER, OPERATOR, ADMIN], required=True)
        parser.add_argument(
            "--token",
            action="store_true",
            help="also print a new API token, once (the user's earlier tokens are revoked)",
        )

    def handle(
        self, *args: object, username: str, role: str, token: bool, **options: object
    ) -> None:
        group = Group.objects.filter(name=role).first()
        if group is None:
            raise CommandError("Roles are missing: run 'manage.py migrate' first.")
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(username=username)
            password = secrets.token_urlsafe(12)
            user.set_password(password)
            user.is_staff = True
            user.save()
            user.groups.set([group])
            key = None
            if token:
                api_token_revoke_all(user=user)
                key = api_token_issue(user=user, expires_in=default_expiry())
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} {role} {username!r} with password: {password}")
        if key:
            self.stdout.write(f"API token (header 'Authorization: Token {key}')")
