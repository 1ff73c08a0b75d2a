"""`demo_data`, which `make run` runs before its processes start and again (`--card`) once the
payment sandbox is up: the demo organisation, its card and plan, and what it says when the
sandbox does not answer."""
import io

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from accounts.models import User
from billing.models import Invoice, Status
from store.management.commands.demo_data import DEMO_ADMIN
from tests.conftest import _free_port

pytestmark = pytest.mark.django_db


def demo_data(*arguments: str) -> str:
    out = io.StringIO()
    call_command("demo_data", *arguments, stdout=out)
    return out.getvalue()


def test_without_the_sandbox_it_says_which_sandbox_did_not_answer_and_keeps_the_free_demo(
        catalog):
    closed = f"http://127.0.0.1:{_free_port()}"

    with override_settings(STRIPE_API_BASE=closed), pytest.raises(CommandError) as refused:
        demo_data("--card", "--wait", "0")

    assert str(refused.value).startswith(
        f"the payment sandbox at {closed} did not take the demo card within 0 s")
    admin = User.objects.get(email=DEMO_ADMIN)
    assert admin.organisation.subscription.status == Status.FREE
    assert not Invoice.objects.exists()


def test_with_the_sandbox_it_buys_the_demo_plan_once(catalog, payment_sandbox):
    first = demo_data("--card")
    again = demo_data("--card")

    admin = User.objects.get(email=DEMO_ADMIN)
    subscription = admin.organisation.subscription
    assert "Demo plan bought: Standard" in first and "Demo plan bought" not in again
    assert (subscription.status, subscription.plan.code, subscription.regular_licences,
            subscription.team_licences) == (Status.ACTIVE, "standard", 5, 2)
    assert list(Invoice.objects.values_list("state", flat=True)) == [Invoice.State.PAID]
    assert admin.organisation.users.filter(is_active=True).count() == 5
    books = io.StringIO()
    call_command("check_books", stdout=books)
    assert books.getvalue().startswith("the books balance: 1 subscriptions, 1 invoices")
