"""manage.py create_support_user EMAIL: a staff account (no organisation) in the "support" group,
with a one-time password printed once, to be changed at first login, and the authenticator (TOTP)
its admin login asks a code from, printed once as an otpauth:// URI."""
import secrets

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.management.commands.set_staff_authenticator import authenticator_instructions
from accounts.models import User
from accounts.services import staff_authenticator_set

GROUP = "support"


class Command(BaseCommand):
    help = ("Create a support staff user in the support group and print a one-time password "
            "and the otpauth:// URI of their authenticator.")

    def add_arguments(self, parser):
        parser.add_argument("email")

    @transaction.atomic
    def handle(self, *args, email, **options):
        group = Group.objects.filter(name=GROUP).first()
        if group is None:
            raise CommandError("The support group is missing: run migrate first.")
        if User.objects.filter(email__iexact=email).exists():
            raise CommandError(f"A user with the email {email} already exists.")
        password = secrets.token_urlsafe(12)
        user = User.objects.create_user(email, password, is_staff=True)
        user.groups.add(group)
        device = staff_authenticator_set(user=user, reason="manage.py create_support_user")
        self.stdout.write(f"Created support user {user.email}.\n"
                          f"One-time password (shown once; change it after the first login): "
                          f"{password}\n{authenticator_instructions(device)}")
