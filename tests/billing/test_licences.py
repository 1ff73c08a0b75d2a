"""Licences as the seed bills them: active users never exceed purchased licences of their type,
the add/remove screens go through the one quote machinery, and the panel says what is unused."""
import itertools
import re

import pytest
from django.db import transaction
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.errors import AccountsError
from accounts.models import LicenceType, User
from accounts.services import user_add, user_change_licence_type, user_deactivate, user_reactivate
from billing.errors import BillingError
from billing.ledger_checks import ledger_mismatches
from billing.models import Quote, Subscription
from billing.services.licences import NoFreeLicence, active_users, licence_change
from billing.services.payments import quote_pay
from billing.services.quotes import quote_create
from billing.services.subscriptions import subscription_apply_quote
from tests.accounts.factories import AdminFactory, UserFactory
from tests.billing.factories import paid_quote_applied
from tests.billing.helpers import card_on_file

pytestmark = pytest.mark.usefixtures("payment_sandbox")


def subscription(admin) -> Subscription:
    return Subscription.objects.get(organisation=admin.organisation)


EMAILS = itertools.count()


def members(admin, count, licence_type=LicenceType.REGULAR):
    return [user_add(organisation=admin.organisation, email=f"m{next(EMAILS)}@x.test",
                     licence_type=licence_type, acting_user=admin) for _ in range(count)]


def quote_of(response) -> Quote:
    assert response.status_code == 302, response.content.decode()[:2000]
    return Quote.objects.get(pk=response.url.rstrip("/").split("/")[-1])


# The rule, in the services ---------------------------------------------------------------------

def test_free_allows_three_users_and_says_to_upgrade(admin):
    members(admin, 2)
    with pytest.raises(NoFreeLicence) as refused:
        members(admin, 1)
    assert refused.value.remedy == "upgrade"
    assert "The Free plan allows 3 users" in str(refused.value)
    with pytest.raises(NoFreeLicence, match="Team users need a paid plan"):
        members(admin, 1, LicenceType.TEAM)
    assert User.objects.filter(organisation=admin.organisation).count() == 3


def test_a_paid_plan_refuses_the_user_past_its_licences_naming_how_many_to_add(admin):
    paid_quote_applied(admin=admin, regular=3, team=1)
    members(admin, 2)
    members(admin, 1, LicenceType.TEAM)
    with pytest.raises(NoFreeLicence) as refused:
        members(admin, 1)
    assert (refused.value.remedy, refused.value.missing, refused.value.licence_type) == (
        "add", 1, LicenceType.REGULAR)
    assert "All 3 regular licences are in use. Add 1 regular licence" in str(refused.value)


def test_reactivating_and_changing_licence_type_need_a_free_licence_too(admin):
    paid_quote_applied(admin=admin, regular=3, team=1)
    first, second = members(admin, 2)
    user_deactivate(user=second, acting_user=admin)
    members(admin, 1)  # takes the licence the deactivated user left
    with pytest.raises(NoFreeLicence):
        user_reactivate(user=second, acting_user=admin)

    user_change_licence_type(user=first, licence_type=LicenceType.TEAM, acting_user=admin)
    assert User.objects.get(pk=first.pk).licence_type == LicenceType.TEAM
    user_reactivate(user=second, acting_user=admin)  # a regular licence is free again
    with pytest.raises(NoFreeLicence):  # the one team licence is taken
        user_change_licence_type(user=second, licence_type=LicenceType.TEAM, acting_user=admin)


def test_deactivating_frees_nothing_on_the_bill(admin_client, admin):
    paid_quote_applied(admin=admin, regular=4)
    person, = members(admin, 1)
    before = admin_client.get(reverse("billing:details")).content.decode()
    user_deactivate(user=person, acting_user=admin)
    after = admin_client.get(reverse("billing:details")).content.decode()

    renewal = re.compile(r'data-testid="next-renewal">([^<]+)<')
    assert renewal.search(before).group(1) == renewal.search(after).group(1)
    assert subscription(admin).regular_licences == 4


# The screens -----------------------------------------------------------------------------------

def test_add_licences_prices_the_addition_then_reviews_and_pays_it(admin_client, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    paid_quote_applied(admin=admin, regular=3)
    url = reverse("billing:licences_add")

    live = admin_client.get(url, {"regular": 2, "team": 0, "storage": 1})
    assert live.status_code == 200 and 'data-testid="due-now"' in live.content.decode()
    quote = quote_of(admin_client.post(url, {"regular": 2, "team": 0, "storage": 1}))
    assert (quote.plan.code, quote.regular_licences, quote.storage_units) == ("standard", 5, 1)
    assert quote.amount_due.amount > 0
    result = quote_pay(organisation=admin.organisation, quote_id=quote.pk, acting_user=admin)
    assert result.charged
    assert (subscription(admin).regular_licences, subscription(admin).storage_units) == (5, 1)


def test_remove_licences_below_the_active_users_names_how_many_to_deactivate(admin_client,
                                                                            admin):
    paid_quote_applied(admin=admin, regular=5)
    members(admin, 3)  # 4 active of 5
    response = admin_client.post(reverse("billing:licences_remove"), {"regular": 3, "team": 0,
                                                                      "storage": 0})
    assert response.status_code == 400
    assert "deactivate 2 users before reducing the licences to 2" in response.content.decode()
    assert not Quote.objects.filter(regular_licences=2).exists()

    quote = quote_of(admin_client.post(reverse("billing:licences_remove"),
                                       {"regular": 1, "team": 0, "storage": 0}))
    assert quote.regular_licences == 4 and quote.credit_to_account.amount > 0


def test_storage_cannot_go_below_what_is_used(admin_client, admin):
    paid_quote_applied(admin=admin, storage=2)
    type(admin.organisation).objects.filter(pk=admin.organisation.pk).update(
        storage_used_mb=3000)
    response = admin_client.post(reverse("billing:licences_remove"),
                                 {"regular": 0, "team": 0, "storage": 2})
    assert response.status_code == 400 and "uses 3000 MB of storage" in response.content.decode()


@pytest.mark.parametrize("values, message", [
    ({"regular": 0, "team": 0, "storage": 0}, "at least one number above zero"),
    ({"regular": -1, "team": 0, "storage": 0}, "greater than or equal to 0"),
    ({"regular": "two", "team": 0, "storage": 0}, "Enter a whole number"),
    ({"regular": "1.5", "team": 0, "storage": 0}, "Enter a whole number"),
    ({"regular": 10**9, "team": 0, "storage": 0}, "less than or equal to"),
    ({"regular": 9, "team": 0, "storage": 0}, "You can remove at most 2 regular user licences"),
])
def test_bad_quantities_get_a_400_and_no_quote(admin_client, admin, values, message):
    paid_quote_applied(admin=admin, regular=3)
    url = reverse("billing:licences_remove" if values["regular"] == 9
                  else "billing:licences_add")
    response = admin_client.post(url, values)
    assert response.status_code == 400 and message in response.content.decode()
    assert Quote.objects.filter(organisation=admin.organisation).count() == 1  # the purchase's


def test_free_and_trial_are_told_to_buy_a_plan_first(admin_client, admin):
    page = admin_client.get(reverse("billing:licences_add"))
    assert "upgrade to a paid plan" in page.content.decode()
    response = admin_client.post(reverse("billing:licences_add"), {"regular": 1, "team": 0,
                                                                   "storage": 0})
    assert response.status_code == 400 and not Quote.objects.exists()


def test_members_strangers_and_visitors_cannot_change_licences(client, admin):
    paid_quote_applied(admin=admin)
    url = reverse("billing:licences_add")
    assert client.post(url, {"regular": 1}).status_code == 302  # to the login page
    client.force_login(UserFactory(organisation=admin.organisation))
    assert client.post(url, {"regular": 1}).status_code == 403
    client.force_login(AdminFactory())  # another organisation's admin: their own Free org
    assert client.post(url, {"regular": 1}).status_code == 400
    assert Quote.objects.filter(organisation=admin.organisation).count() == 1


def test_the_panel_says_what_is_paid_for_and_offers_to_remove_the_unused(admin_client, admin):
    paid_quote_applied(admin=admin, regular=10)
    people = members(admin, 8)  # 9 active with the admin
    for person in people[:2]:
        user_deactivate(user=person, acting_user=admin)  # 7 active, 2 deactivated, 1 unused

    for page in (reverse("billing:details"), reverse("accounts:users")):
        text = admin_client.get(page).content.decode()
        assert "you pay for 10 licences: 7 active, 2 deactivated, 1 unused" in text
        assert "3 licences are not used by active users: removing them saves" in text

    quote = quote_of(admin_client.post(reverse("billing:licences_remove"), {"regular": 3}))
    assert quote.regular_licences == 7 and quote.credit_to_account.amount > 0


def test_the_refusal_on_the_users_page_offers_exactly_the_missing_licences(admin_client, admin):
    paid_quote_applied(admin=admin, regular=2)
    members(admin, 1)  # both licences in use
    response = admin_client.post(reverse("accounts:user_add"), {
        "email": "third@x.test", "role": "member", "licence_type": "regular"})
    page = response.content.decode()
    assert response.status_code == 400 and "Add 1 regular licence" in page
    assert 'name="regular" value="1"' in page and reverse("billing:licences_add") in page
    assert not User.objects.filter(email="third@x.test").exists()


def test_a_removal_quote_made_before_a_user_was_added_is_refused_as_stale(admin_client, admin):
    paid_quote_applied(admin=admin, regular=4)
    quote = quote_of(admin_client.post(reverse("billing:licences_remove"), {"regular": 1}))
    members(admin, 3)  # now 4 active: the quote's 3 licences would leave one without

    result_page = admin_client.post(reverse("billing:pay", args=[quote.pk]), follow=True)
    assert "Users were added after this quote was made" in result_page.content.decode()
    assert subscription(admin).regular_licences == 4


# Any sequence of changes -------------------------------------------------------------------------

STEPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.sampled_from(["regular", "team"]), st.integers(1, 3)),
    st.tuples(st.just("remove"), st.sampled_from(["regular", "team"]), st.integers(1, 3)),
    st.tuples(st.just("invite"), st.sampled_from(LicenceType.values), st.integers(0, 0)),
    st.tuples(st.just("deactivate"), st.just(""), st.integers(0, 20)),
    st.tuples(st.just("reactivate"), st.just(""), st.integers(0, 20)),
    st.tuples(st.just("retype"), st.sampled_from(LicenceType.values), st.integers(0, 20)),
), min_size=1, max_size=12)


def _step(admin, kind: str, licence_type: str, number: int) -> None:
    organisation = admin.organisation
    people = list(User.objects.filter(organisation=organisation).exclude(pk=admin.pk)
                  .order_by("pk"))
    try:
        if kind in ("add", "remove"):
            subscription = Subscription.objects.select_related("plan").get(
                organisation=organisation)
            counts = {"regular": 0, "team": 0, "storage": 0, licence_type: number}
            change = licence_change(subscription=subscription, remove=kind == "remove",
                                    **counts)
            quote = quote_create(organisation=organisation, acting_user=admin, change=change)
            with transaction.atomic():
                locked = Subscription.objects.select_for_update().get(pk=subscription.pk)
                subscription_apply_quote(quote=quote, subscription=locked, payment=None,
                                         actor=admin)
        elif kind == "invite":
            members(admin, 1, licence_type)
        elif people and kind == "deactivate":
            user_deactivate(user=people[number % len(people)], acting_user=admin)
        elif people and kind == "reactivate":
            user_reactivate(user=people[number % len(people)], acting_user=admin)
        elif people and kind == "retype":
            user_change_licence_type(user=people[number % len(people)],
                                     licence_type=licence_type, acting_user=admin)
    except (BillingError, AccountsError):
        pass  # refused: the invariants below must hold all the same


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_any_sequence_keeps_active_users_within_licences_and_the_ledger_whole(db, steps):
    admin = AdminFactory()
    paid_quote_applied(admin=admin, regular=2, team=1)
    for kind, licence_type, number in steps:
        _step(admin, kind, licence_type, number)
        subscription = Subscription.objects.get(organisation=admin.organisation)
        active = active_users(admin.organisation_id)
        assert active[LicenceType.REGULAR] <= subscription.regular_licences
        assert active[LicenceType.TEAM] <= subscription.team_licences
        assert ledger_mismatches() == []
