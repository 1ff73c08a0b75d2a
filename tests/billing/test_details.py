"""Manage (管理) is the administrators' door to the store: in the menu for them only."""
import pytest
from django.urls import reverse

from accounts.models import LicenceType
from tests.accounts.factories import AdminFactory, UserFactory


@pytest.fixture
def admin(db):
    return AdminFactory()


def test_admin_sees_manage_in_the_profile_menu(client, admin):
    client.force_login(admin)

    page = client.get(reverse("accounts:home"), HTTP_ACCEPT_LANGUAGE="ja").content.decode()

    assert f'href="{reverse("billing:details")}"' in page
    assert ">管理</a>" in page


def test_member_does_not_see_manage_and_gets_403_on_it(client, admin):
    member = UserFactory(organisation=admin.organisation)
    client.force_login(member)

    home = client.get(reverse("accounts:home")).content.decode()
    response = client.get(reverse("billing:details"), HTTP_ACCEPT_LANGUAGE="en")

    assert f'href="{reverse("billing:details")}"' not in home
    assert response.status_code == 403
    assert "Only your organisation's administrators" in response.content.decode()


def test_staff_without_an_organisation_get_403_on_store_screens(client, db):
    staff = UserFactory(organisation=None, is_staff=True)
    client.force_login(staff)

    assert client.get(reverse("billing:details")).status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(client, db):
    response = client.get(reverse("billing:details"))

    assert response.status_code == 302
    assert response.url == f"{reverse('accounts:login')}?next={reverse('billing:details')}"


def test_manage_counts_users_per_licence_type(client, admin, django_assert_num_queries):
    org = admin.organisation
    UserFactory.create_batch(2, organisation=org)
    UserFactory(organisation=org, is_active=False)
    UserFactory.create_batch(3, organisation=org, licence_type=LicenceType.TEAM)
    UserFactory.create_batch(4)  # another organisation's people are not counted
    client.force_login(admin)

    # session, user (with its organisation), subscription, invoices, the open payment if any,
    # a trial that just ended (Free only), one grouped count
    with django_assert_num_queries(7):
        response = client.get(reverse("billing:details"))

    assert response.context["counts"] == {
        "regular": {"active": 3, "deactivated": 1},
        "team": {"active": 3, "deactivated": 0},
    }


def test_a_payment_being_confirmed_is_announced_with_its_amount(
        client, admin, django_assert_num_queries):
    from djmoney.money import Money

    from billing.models import Payment
    from billing.pricing import Change
    from billing.services.quotes import quote_create
    from store.models import Plan
    from tests.billing.factories import paid_quote_applied

    paid_quote_applied(admin=admin)
    quote = quote_create(organisation=admin.organisation, acting_user=admin,
                         change=Change(Plan.objects.get(code="professional"), "monthly", 3, 0, 0))
    for key, amount, state in (("settled", 3000, Payment.State.SUCCEEDED),
                               ("open", 2040, Payment.State.PROCESSING)):  # one open at most
        Payment.objects.create(organisation=admin.organisation, quote=quote, idempotency_key=key,
                               amount=Money(amount, "JPY"), state=state)
    client.force_login(admin)
    client.get(reverse("billing:details"))  # the process reads the prices it shows once

    # session, user, subscription, invoices, the open payment, one grouped count
    with django_assert_num_queries(6):
        page = client.get(reverse("billing:details"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert 'data-testid="payment-open"' in page
    assert "A payment of ¥2,040 made at" in page
    assert reverse("billing:review", args=[quote.pk]) in page


def test_no_notice_once_the_payment_is_settled(client, admin):
    client.force_login(admin)

    page = client.get(reverse("billing:details")).content.decode()

    assert 'data-testid="payment-open"' not in page
