"""`manage.py create_api_token USERNAME --scope SCOPE`: issue an API token and print its key."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from hosting.choices import TokenScope
from hosting.models import Customer
from hosting.services.errors import ServiceError
from hosting.services.tokens import issue_token


class Command(BaseCommand):
    help = (
        "Issue an API token for USERNAME and print its key (shown only this once). "
        "Scopes: billing (staff only; acts for every customer), customer (its own customer "
        "only), read (no writes)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--scope", required=True, choices=TokenScope.values)
        parser.add_argument(
            "--customer",
            type=int,
            help="Customer id the token acts for (default: the user's first customer).",
        )
        parser.add_argument(
            "--expires-days", type=int, help="Expire after this many days (default: never)."
        )
        parser.add_argument("--name", default="", help="A label for the token.")

    def handle(self, *args, username: str, scope: str, **options) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(username=username)
        except User.DoesNotExist as exc:
            raise CommandError(f"No user named {username!r}.") from exc
        customer = None
        if options["customer"] is not None:
            customer = Customer.objects.filter(pk=options["customer"]).first()
            if customer is None:
                raise CommandError(f"No customer with id {options['customer']}.")
        expires_at = None
        if options["expires_days"] is not None:
            if options["expires_days"] < 1:
                raise CommandError("--expires-days must be at least 1.")
            expires_at = timezone.now() + timedelta(days=options["expires_days"])
        try:
            token, key = issue_token(
                user=user,
                scope=scope,
                customer=customer,
                name=options["name"],
                expires_at=expires_at,
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        # The key alone on stdout, so that scripts can capture it; the rest on stderr.
        self.stdout.write(key)
        acts_for = token.customer.name if token.customer else "every customer"
        expiry = f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "no expiry"
        self.stderr.write(
            f"Token {token} for {user.username}, acting for {acts_for}, {expiry}. "
            "The key is not stored: copy it now."
        )
