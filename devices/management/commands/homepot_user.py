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
        parser.add_argument(
            "--token-only",
            action="store_true",
            help="as --token, but print nothing but the token (for scripts: "
            "API_TOKEN=$(...)); the password is left as it was (a new user has none)",
        )

    def handle(
        self,
        *args: object,
        username: str,
        role: str,
        token: bool,
        token_only: bool,
        **options: object,
    ) -> None:
        group = Group.objects.filter(name=role).first()
        if group is None:
            raise CommandError("Roles are missing: run 'manage.py migrate' first.")
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(username=username)
            password = None if token_only else secrets.token_urlsafe(12)
            if password is not None:
                user.set_password(password)
            elif created:
                user.set_unusable_password()
            user.is_staff = True
            user.save()
            user.groups.set([group])
            key = None
            if token or token_only:
                api_token_revoke_all(user=user)
                key = api_token_issue(user=user, expires_in=default_expiry())
        if token_only:
            self.stdout.write(key)
            return
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} {role} {username!r} with password: {password}")
        if key:
            self.stdout.write(f"API token (header 'Authorization: Token {key}')")
