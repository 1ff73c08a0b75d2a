"""Factories for organisations and their people."""
import factory

from accounts.models import LicenceType, Organisation, Role, User
from billing.services.subscriptions import subscription_create_free
from tests.store.factories import ensure_shipped_catalog

PASSWORD = "correct-horse-battery-9"


class OrganisationFactory(factory.django.DjangoModelFactory):
    """An organisation on Free, as sign-up leaves it."""

    class Meta:
        model = Organisation
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Org {n} K.K.")
    currency = "JPY"

    @factory.post_generation
    def subscription(organisation, create, extracted, **kwargs):
        if create:
            ensure_shipped_catalog()  # Free must exist; transactional tests flush it
            subscription_create_free(organisation=organisation)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    name = factory.Faker("name")
    organisation = factory.SubFactory(OrganisationFactory)
    role = Role.MEMBER
    licence_type = LicenceType.REGULAR
    password = factory.django.Password(PASSWORD)


class AdminFactory(UserFactory):
    role = Role.ADMIN
