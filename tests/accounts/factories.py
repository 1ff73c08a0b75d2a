"""Factories for organisations and their people."""
import factory

from accounts.models import LicenceType, Organisation, Role, User

PASSWORD = "correct-horse-battery-9"


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organisation

    name = factory.Sequence(lambda n: f"Org {n} K.K.")
    currency = "JPY"


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
