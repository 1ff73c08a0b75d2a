"""authorize is cheap: a cache hit costs the key's read and nothing else, a miss a few bounded
queries. Every change of plan, status, quantities, users or usage is seen by the next answer,
including the writes that send no signal (the lifecycle sweeps' batch UPDATE, usage reports)."""
import datetime as dt

import pytest
from django.core.cache import cache

from accounts.services import user_deactivate
from billing import entitlements_cache
from billing.entitlements_cache import FORGOTTEN, cache_key, entitlements_cached
from billing.models import Status, Subscription
from billing.services import lifecycle
from store import clock
from tests.accounts.factories import UserFactory
from tests.api.conftest import Crm, key_for
from tests.billing.factories import paid_quote_applied, subscription_in

pytestmark = [pytest.mark.django_db, pytest.mark.redis]
DAY = dt.timedelta(days=1)


def settled(organisation) -> None:
    """As if the change's marker had expired (FORGOTTEN_SECONDS later): answers are kept again."""
    cache.delete(cache_key(organisation.pk))


def cached(crm: Crm, organisation) -> dict:
    """The entitlements, answered once so that the cache holds them."""
    settled(organisation)
    answer = crm.entitlements()
    assert cache.get(cache_key(organisation.pk)) is not None
    return answer


def test_authorize_on_a_cache_hit_reads_only_the_key_and_on_a_miss_three_rows(
        admin, crm, django_assert_num_queries):
    crm.entitlements()  # the key's first use is written; not measured
    settled(admin.organisation)

    # The key (with its organisation), the subscription (with plan and organisation) and the
    # active users per licence type (no storage bought: the add-on is not read).
    with django_assert_num_queries(3):
        assert crm.authorize("create")["allowed"] is True
    with django_assert_num_queries(1):
        assert crm.authorize("create")["allowed"] is True
    with django_assert_num_queries(1):
        crm.entitlements()


def test_a_downgrade_applied_is_seen_by_the_next_answer(admin):
    paid_quote_applied(admin=admin, plan="professional")
    crm = Crm(key_for(admin))
    crm.report(records=12_340)
    assert cached(crm, admin.organisation)["plan"] == "professional"
    assert crm.authorize("create")["allowed"] is True

    paid_quote_applied(admin=admin, plan="standard")

    assert cache.get(cache_key(admin.organisation_id)) == FORGOTTEN
    assert crm.authorize("create")["allowed"] is False
    assert crm.entitlements()["plan"] == "standard"


def test_a_usage_report_is_seen_by_the_next_answer(admin, crm):
    cached(crm, admin.organisation)
    assert crm.authorize("create", amount=1_000)["allowed"] is True  # Free: 1,000 records

    crm.report(records=1)

    assert crm.authorize("create", amount=1_000)["allowed"] is False
    assert crm.entitlements()["usage"]["records"] == 1


def past_due(admin) -> Subscription:
    """An active Standard month whose renewal failed (no card on file): past due, in grace."""
    subscription = subscription_in(Status.ACTIVE, admin=admin)
    with clock.travel(subscription.current_period_end + DAY):
        lifecycle.sweep_renewals()
    subscription.refresh_from_db()
    assert subscription.status == Status.PAST_DUE
    return subscription


def test_a_lock_by_the_sweep_is_seen_by_the_next_answer(admin):
    subscription = past_due(admin)
    crm = Crm(key_for(admin))
    with clock.travel(subscription.grace_ends_at + DAY):
        assert cached(crm, admin.organisation)["status"] == "past_due"
        assert crm.authorize("update")["allowed"] is True

        assert lifecycle.sweep_locks() == {"locked": 1}

        assert crm.authorize("update")["allowed"] is False
        assert crm.entitlements()["status"] == "locked"


def test_a_trial_ended_by_the_sweep_is_seen_by_the_next_answer(admin):
    trial = subscription_in(Status.TRIALING, admin=admin)
    crm = Crm(key_for(admin))
    assert cached(crm, admin.organisation)["plan"] == "standard"

    with clock.travel(trial.trial_ends_at + DAY):
        assert lifecycle.sweep_trial_ends() == {"trials_ended": 1}

    assert crm.entitlements()["plan"] == "free"
    assert crm.entitlements()["limits"]["records"] == 1_000


def test_a_user_deactivated_is_seen_by_the_next_answer(admin, crm):
    colleague = UserFactory(organisation=admin.organisation)
    assert cached(crm, admin.organisation)["usage"]["users"] == {"regular": 2, "team": 0}

    user_deactivate(user=colleague, acting_user=admin)

    assert crm.entitlements()["usage"]["users"] == {"regular": 1, "team": 0}


def test_an_answer_read_before_a_change_is_not_kept_after_it(admin):
    """The race the marker closes: a request reads the rows, a change commits and forgets, and
    only then does the request store what it read."""
    settled(admin.organisation)
    stale = entitlements_cache.entitlements_for(organisation=admin.organisation)

    entitlements_cache.entitlements_forget([admin.organisation_id])
    assert cache.add(cache_key(admin.organisation_id), stale) is False  # the late store

    assert cache.get(cache_key(admin.organisation_id)) == FORGOTTEN
    assert entitlements_cached(organisation=admin.organisation) == stale  # computed, not kept
    assert cache.get(cache_key(admin.organisation_id)) == FORGOTTEN


def test_a_cache_that_cannot_be_reached_does_not_fail_the_change(admin, monkeypatch, caplog):
    def unreachable(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(entitlements_cache.cache, "set_many", unreachable)

    paid_quote_applied(admin=admin, plan="professional")

    assert Subscription.objects.get(organisation=admin.organisation).plan.code == "professional"
    assert "could not forget the entitlements" in caplog.text
