from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from homepot.api_tokens import api_token_issue, api_token_revoke_all, default_expiry


class Command(BaseCommand):
    help = (
        "Print a new API token for an existing user, once (it is stored only hashed); "
        "or revoke all of the user's tokens."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--expires-days",
            type=int,
            default=None,
            help="lifetime in days (default: API_TOKEN_TTL_DAYS; 0: never expires)",
        )
        parser.add_argument("--revoke", action="store_true", help="revoke every token of the user")

    def handle(
        self,
        *args: object,
        username: str,
        expires_days: int | None,
        revoke: bool,
        **options: object,
    ) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user {username!r}: create one with homepot_user.")
        if revoke:
            count = api_token_revoke_all(user=user)
            self.stdout.write(f"Revoked {count} token(s) of {username!r}.")
            return
        if expires_days is not None and expires_days < 0:
            raise CommandError("--expires-days must be 0 (never) or more.")
        if expires_days is None:
            expires_in = default_expiry()
        else:
            expires_in = timedelta(days=expires_days) if expires_days else None
        key = api_token_issue(user=user, expires_in=expires_in)
        until = "never expires" if expires_in is None else f"expires in {expires_in.days} days"
        self.stdout.write(f"API token for {username!r} ({until}); shown once, store it now:")
        self.stdout.write(f"API token (header 'Authorization: Token {key}')")
