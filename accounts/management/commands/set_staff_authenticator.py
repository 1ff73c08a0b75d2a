"""manage.py set_staff_authenticator EMAIL: a new authenticator (TOTP) for a staff member's admin
login, replacing the old one; prints the otpauth:// URI to add to their authenticator app."""
from django.core.management.base import BaseCommand, CommandError

from accounts.errors import AccountsError
from accounts.models import User
from accounts.services import staff_authenticator_set


def authenticator_instructions(device) -> str:
    return ("Authenticator for the admin login (shown once: open it on the staff member's phone, "
            "or paste it into their authenticator app; admin then asks for its 6-digit code):\n"
            f"{device.config_url}")


class Command(BaseCommand):
    help = ("Give a staff member a new authenticator (TOTP) for the admin login, replacing any "
            "old one, and print its otpauth:// URI once.")

    def add_arguments(self, parser):
        parser.add_argument("email")

    def handle(self, *args, email, **options):
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user has the email {email}.")
        try:
            device = staff_authenticator_set(user=user, reason="manage.py set_staff_authenticator")
        except AccountsError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(authenticator_instructions(device))
