"""The store screens as an admin uses them, and what bad input gets."""
import datetime as dt
import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent, Organisation
from billing.models import Invoice, Payment, Quote, Subscription
from store import clock
from tests.accounts.factories import AdminFactory, UserFactory
from tests.billing.helpers import (
    DECLINING_CARD,
    card_on_file,
    processor_charges,
    processor_customer_gone,
)
from tests.store.helpers import admin_login

pytestmark = pytest.mark.usefixtures("payment_sandbox")

CONFIGURE = {"cycle": "monthly", "regular_licences": "3", "team_licences": "0",
             "storage_units": "0"}


def _subscription(admin):
    return Subscription.objects.get(organisation=admin.organisation)


def _quote(admin_client, code="standard", **data):
    response = admin_client.post(reverse("billing:configure", args=[code]),
                                 {**CONFIGURE, **data})
    assert response.status_code == 302, response.content.decode()[:2000]
    return Quote.objects.get(pk=response.url.rstrip("/").split("/")[-1])


def test_details_show_the_free_plan_and_the_store_buttons_in_japanese(client, admin):
    client.force_login(admin)

    page = client.get(reverse("billing:details"), HTTP_ACCEPT_LANGUAGE="ja").content.decode()

    for label in ("購入情報の詳細", "プランを変更する", "他のプランを試す", "決済の履歴",
                  "決済方法", "アカウントを削除する"):
        assert label in page, label
    assert 'data-testid="current-plan">無料<' in page


def test_change_plan_marks_upgrades_and_downgrades(admin_client, admin):
    page = admin_client.get(reverse("billing:plans"), HTTP_ACCEPT_LANGUAGE="ja").content.decode()

    assert page.count("アップグレードする") == 4
    assert "ダウングレードする" not in page


def test_configure_shows_the_live_price_as_an_htmx_partial(admin_client):
    response = admin_client.get(reverse("billing:configure", args=["standard"]),
                                {**CONFIGURE, "regular_licences": "2"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()

    assert html.lstrip().startswith('<aside id="summary"')
    assert re.search(r'data-testid="due-now">¥4,488<', html)  # 2 × 2,040 + 10% tax


def test_the_whole_purchase_from_configure_to_invoice(admin_client, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    quote = _quote(admin_client)

    review = admin_client.get(reverse("billing:review", args=[quote.pk])).content.decode()
    paid = admin_client.post(reverse("billing:pay", args=[quote.pk]), follow=True)

    assert "¥6,732" in review
    assert "visa •••• 4242" in review.lower()
    assert paid.status_code == 200
    invoice = Invoice.objects.get()
    assert paid.redirect_chain[-1][0] == reverse("billing:invoice", args=[invoice.number])
    page = paid.content.decode()
    assert "T1234567890123" in page and "¥6,732" in page
    assert _subscription(admin).plan.code == "standard"


@pytest.mark.parametrize("field, value, message", [
    ("regular_licences", "abc", "Enter a whole number."),
    ("regular_licences", "0", "greater than or equal to 1"),
    ("team_licences", "-1", "greater than or equal to 0"),
    ("storage_units", "99999999999999999999", "less than or equal to 10000"),
    ("cycle", "weekly", "Select a valid choice."),
])
def test_bad_quantities_are_refused_and_no_quote_is_made(admin_client, field, value, message):
    response = admin_client.post(reverse("billing:configure", args=["standard"]),
                                 {**CONFIGURE, field: value})

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Quote.objects.exists()


def test_fewer_licences_than_active_users_is_refused_on_screen(admin_client, admin):
    UserFactory.create_batch(3, organisation=admin.organisation)

    response = admin_client.post(reverse("billing:configure", args=["standard"]), CONFIGURE)

    assert response.status_code == 400
    assert "deactivate 1 user before reducing the licences to 3" in response.content.decode()
    assert not Quote.objects.exists()


def test_a_tampered_plan_code_is_a_404(admin_client):
    assert admin_client.post(reverse("billing:configure", args=["platinum"]),
                             CONFIGURE).status_code == 404


def test_a_currency_in_the_request_is_ignored_the_organisations_is_used(admin_client, admin):
    quote = _quote(admin_client, currency="USD", amount_currency="USD")

    assert quote.currency == "JPY" and quote.amount_due.currency.code == "JPY"


def test_another_organisations_quote_is_a_404_and_nothing_is_charged(admin_client, admin):
    stranger = AdminFactory()
    card_on_file(organisation=stranger.organisation, acting_user=stranger)
    other = Client()
    other.force_login(stranger)
    their_quote = _quote(other)

    assert admin_client.get(reverse("billing:review", args=[their_quote.pk])).status_code == 404
    assert admin_client.post(reverse("billing:pay", args=[their_quote.pk])).status_code == 404
    assert not Payment.objects.exists()
    assert Quote.objects.get(pk=their_quote.pk).state == Quote.State.OPEN


def test_a_member_cannot_pay_a_quote(client, admin_client, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    quote = _quote(admin_client)
    client.force_login(UserFactory(organisation=admin.organisation))

    assert client.post(reverse("billing:pay", args=[quote.pk])).status_code == 403
    assert not Payment.objects.exists()


def test_pay_without_the_csrf_token_is_refused(admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    setup = Client()
    setup.force_login(admin)
    quote = _quote(setup)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin)

    assert strict.post(reverse("billing:pay", args=[quote.pk])).status_code == 403
    assert not Payment.objects.exists()


def test_a_double_clicked_pay_charges_once_and_both_clicks_land_on_the_invoice(admin_client,
                                                                               admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    quote = _quote(admin_client)

    first = admin_client.post(reverse("billing:pay", args=[quote.pk]))
    second = admin_client.post(reverse("billing:pay", args=[quote.pk]))

    assert first.status_code == second.status_code == 302
    assert first.url == second.url == reverse("billing:invoice",
                                              args=[Invoice.objects.get().number])
    assert len(processor_charges(_subscription(admin).processor_customer_id)) == 1


def test_an_expired_quote_is_refused_on_screen(admin_client, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    quote = _quote(admin_client)

    with clock.travel(quote.expires_at + dt.timedelta(seconds=1)):
        response = admin_client.post(reverse("billing:pay", args=[quote.pk]))

    assert response.status_code == 409
    assert "expired" in response.content.decode()
    assert not Payment.objects.exists()


def test_a_declined_card_shows_the_reason_and_leaves_the_plan(admin_client, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin, number=DECLINING_CARD)
    quote = _quote(admin_client)

    response = admin_client.post(reverse("billing:pay", args=[quote.pk]))

    assert response.status_code == 402
    assert "Your card was declined." in response.content.decode()
    assert _subscription(admin).plan.code == "free"


def test_a_trial_starts_from_the_screen_and_shows_its_end_date(admin_client, admin):
    with clock.travel(dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)):
        admin_client.post(reverse("billing:trial"), {"plan": "professional"})
        page = admin_client.get(reverse("billing:details")).content.decode()

    assert 'data-testid="trial-ends">2026-12-16<' in page
    again = admin_client.post(reverse("billing:trial"), {"plan": "professional"}, follow=True)
    assert "Trials start from the Free plan" in again.content.decode()


def test_switch_to_free_is_confirmed_then_credits_the_unused_time(admin_client, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    admin_client.post(reverse("billing:pay", args=[_quote(admin_client).pk]))

    review = admin_client.post(reverse("billing:switch_to_free"), follow=True)
    assert _subscription(admin).plan.code == "standard"  # nothing happens before confirming
    quote = Quote.objects.get(plan__code="free")
    admin_client.post(reverse("billing:pay", args=[quote.pk]))

    assert "never paid out" in review.content.decode()
    sub = _subscription(admin)
    assert (sub.plan.code, sub.status) == ("free", "free")
    assert sub.credit_balance.amount > 0


def test_delete_account_needs_the_exact_name(admin_client, admin):
    response = admin_client.post(reverse("billing:delete"), {"organisation_name": "wrong"})

    assert response.status_code == 400
    assert "That is not your organisation&#x27;s name." in response.content.decode()
    assert Organisation.objects.filter(pk=admin.organisation_id).exists()


def test_delete_account_removes_the_people_cards_and_the_processor_customer(admin_client, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    customer = _subscription(admin).processor_customer_id
    organisation_id = admin.organisation_id
    name = admin.organisation.name

    response = admin_client.post(reverse("billing:delete"), {"organisation_name": name})

    assert response.status_code == 302
    closed = Organisation.objects.get(pk=organisation_id)  # kept for its records, anonymised
    assert closed.closed_at is not None and name not in closed.name
    assert not closed.users.exists() and not closed.payment_methods.exists()
    assert "_auth_user_id" not in admin_client.session
    assert AuditEvent.objects.get(action="organisation.deleted").target_id == str(
        organisation_id)
    assert processor_customer_gone(customer)


def test_another_organisations_invoice_number_is_a_404(admin_client):
    stranger = AdminFactory()
    card_on_file(organisation=stranger.organisation, acting_user=stranger)
    other = Client()
    other.force_login(stranger)
    other.post(reverse("billing:pay", args=[_quote(other).pk]))

    response = admin_client.get(reverse("billing:invoice", args=[Invoice.objects.get().number]))

    assert response.status_code == 404


@pytest.mark.parametrize("name, args, method", [
    ("billing:details", [], "get"), ("billing:plans", [], "get"),
    ("billing:configure", ["standard"], "post"), ("billing:trial", [], "post"),
    ("billing:switch_to_free", [], "post"), ("billing:delete", [], "post"),
    ("billing:card_add", [], "post"),
])
def test_members_get_403_on_every_store_screen_and_nothing_changes(client, admin, name, args,
                                                                   method):
    client.force_login(UserFactory(organisation=admin.organisation))
    before = Subscription.objects.get(organisation=admin.organisation).version

    response = getattr(client, method)(reverse(name, args=args), {
        **CONFIGURE, "plan": "standard", "organisation_name": admin.organisation.name})

    assert response.status_code == 403
    assert Subscription.objects.get(organisation=admin.organisation).version == before
    assert Organisation.objects.filter(pk=admin.organisation_id).exists()


def test_details_query_count_does_not_grow_with_invoices(admin_client, admin,
                                                         django_assert_num_queries):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    for code in ("standard", "professional", "enterprise"):
        admin_client.post(reverse("billing:pay", args=[_quote(admin_client, code).pk]))

    admin_client.get(reverse("billing:details"))  # the process reads the prices it shows once
    # session, user (with its organisation), subscription, invoices (each with the id of the
    # payment that paid it), the open payment if any, one grouped user count
    with django_assert_num_queries(6):
        page = admin_client.get(reverse("billing:details")).content.decode()
    assert page.count(">INV-00000") == 3  # one link per invoice


def test_support_staff_see_the_subscription_and_invoices_in_admin_read_only(client, admin):
    card_on_file(organisation=admin.organisation, acting_user=admin)
    buyer = Client()
    buyer.force_login(admin)
    buyer.post(reverse("billing:pay", args=[_quote(buyer).pk]))
    admin_login(client, UserFactory(organisation=None, is_staff=True, is_superuser=True))
    sub = _subscription(admin)
    invoice = Invoice.objects.get()

    sub_page = client.get(reverse("admin:billing_subscription_change", args=[sub.pk]))
    invoice_page = client.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))
    edit = client.post(reverse("admin:billing_invoice_change", args=[invoice.pk]),
                       {"number": "HACKED"})

    assert sub_page.status_code == invoice_page.status_code == 200
    assert f"paid, invoice {invoice.number}" in sub_page.content.decode()  # status history
    assert invoice.number in invoice_page.content.decode()
    assert edit.status_code == 403
    assert Invoice.objects.get().number == invoice.number


def test_the_live_price_costs_a_fixed_number_of_queries(admin_client, admin,
                                                        django_assert_num_queries):
    UserFactory.create_batch(5, organisation=admin.organisation)

    # session, user (with its organisation), plan, subscription (with its prices), active
    # users, add-ons, and one current price each for the plan, team licences and storage
    with django_assert_num_queries(9):
        response = admin_client.get(
            reverse("billing:configure", args=["professional"]),
            {"cycle": "yearly", "regular_licences": "8", "team_licences": "2",
             "storage_units": "1"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200


def test_the_review_warns_with_figures_when_usage_is_over_the_new_plans_limit(client, admin):
    admin.organisation.record_count = 12_340
    admin.organisation.save()
    client.force_login(admin)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "ja"
    quote = _quote(client, "standard")

    page = client.get(reverse("billing:review", args=[quote.pk])).content.decode()

    assert ("データが 12,340 件ありますが、スタンダードの上限は 10,000 件です。" in page)
    assert "既存のデータは編集できます" in page


@pytest.mark.parametrize("data, message", [
    ({"team_licences": "0"}, "deactivate 1 user"),
    ({"regular_licences": "x"}, "Enter a whole number."),
])
def test_the_live_price_shows_a_refusal_in_place(admin_client, admin, data, message):
    UserFactory(organisation=admin.organisation, licence_type="team")

    response = admin_client.get(reverse("billing:configure", args=["standard"]),
                                {**CONFIGURE, **data}, HTTP_HX_REQUEST="true")

    assert response.status_code == 200  # swapped in by htmx, which ignores 4xx answers
    html = response.content.decode()
    assert html.lstrip().startswith('<aside id="summary"')
    assert message in html
    assert not Quote.objects.exists()


@pytest.mark.parametrize(("team", "storage"), [(0, 0), (2, 3)])
def test_the_live_price_for_a_paying_subscriber_costs_one_more_query_whatever_it_pays_for(
        admin_client, admin, django_assert_num_queries, team, storage):
    from tests.billing.factories import paid_quote_applied

    paid_quote_applied(admin=admin, team=team, storage=storage)
    asked = {"cycle": "monthly", "regular_licences": "8", "team_licences": "2",
             "storage_units": "1"}
    admin_client.get(reverse("billing:configure", args=["professional"]), asked,
                     HTTP_HX_REQUEST="true")  # the process reads the prices it holds once

    # as above, plus the lines of the invoice that paid the running period (to credit them)
    with django_assert_num_queries(10):
        response = admin_client.get(reverse("billing:configure", args=["professional"]), asked,
                                    HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert 'data-testid="due-now"' in response.content.decode()


def test_the_card_page_asks_nothing_of_the_processor_on_get(admin_client, admin):
    response = admin_client.get(reverse("billing:card_update"))

    assert response.status_code == 200
    assert 'data-testid="card-element"' in response.content.decode()
    assert _subscription(admin).processor_customer_id == ""  # no write on GET
