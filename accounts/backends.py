"""Django's ModelBackend, with the user read the way every portal page needs it."""
from django.contrib.auth.backends import ModelBackend
from django.db.models import F

from accounts.models import User


class UserBackend(ModelBackend):
    """Loads the signed-in user with their organisation and its subscription's status in one
    joined query: the pages' `user.organisation` and the lock check
    (`accounts.permissions.organisation_is_locked`) then cost no query of their own."""

    def get_user(self, user_id):
        user = (User._default_manager.select_related("organisation")
                .annotate(organisation_subscription_status=F("organisation__subscription__status"))
                .filter(pk=user_id).first())
        if user is None or not self.user_can_authenticate(user):
            return None
        if user.organisation is not None:
            user.organisation.subscription_status = user.organisation_subscription_status
        return user
