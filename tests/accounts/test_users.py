"""Admins add, deactivate and reactivate their organisation's users; nobody else can."""
import re
import threading
import time

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import translation

from accounts import services
from accounts.errors import AccountsError
from accounts.models import AuditEvent, LicenceType, Role, User
from tests.accounts.factories import PASSWORD, AdminFactory, UserFactory
from tests.billing.factories import paid_quote_applied


@pytest.fixture
def admin(db):
    return AdminFactory(email="boss@example.test")


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client


def _state(user):
    user.refresh_from_db()
    return user.is_active, user.role, user.licence_type


# The invitation is sent on commit: these tests commit for real.
@pytest.mark.django_db(transaction=True)
def test_admin_adds_a_team_user_who_is_invited_by_email(admin_client, admin):
    with transaction.atomic():
        paid_quote_applied(admin=admin, team=1)  # a team licence to give
    response = admin_client.post(reverse("accounts:user_add"), {
        "email": "New.Person@example.test", "name": "新人", "role": Role.MEMBER,
        "licence_type": LicenceType.TEAM}, HTTP_ACCEPT_LANGUAGE="en", follow=True)

    person = User.objects.get(email="new.person@example.test")
    assert person.organisation == admin.organisation
    assert person.licence_type == LicenceType.TEAM
    assert not person.has_usable_password()
    assert "new.person@example.test was added and invited by email." in response.content.decode()
    event = AuditEvent.objects.get(action="user.added")
    assert (event.actor, event.target_id, event.after["licence_type"]) == (
        admin, str(person.pk), "team")
    assert mail.outbox[0].to == ["new.person@example.test"]
    assert admin.organisation.name in mail.outbox[0].subject


# The invitation is sent on commit: these tests commit for real.
@pytest.mark.django_db(transaction=True)
def test_the_invitation_link_lets_the_new_user_choose_a_password_and_log_in(admin_client):
    admin_client.post(reverse("accounts:user_add"), {
        "email": "new@example.test", "role": Role.MEMBER, "licence_type": LicenceType.REGULAR})
    link = re.search(r"https?://[^/]+(/reset/\S+/)", mail.outbox[0].body).group(1)

    invited = Client()
    form_page = invited.get(link, follow=True)
    invited.post(form_page.redirect_chain[-1][0],
                 {"new_password1": "my-own-secret-42", "new_password2": "my-own-secret-42"})
    response = invited.post(reverse("accounts:login"),
                            {"username": "new@example.test", "password": "my-own-secret-42"})

    assert response.status_code == 302
    assert invited.session["_auth_user_id"] == str(User.objects.get(email="new@example.test").pk)


# The invitation is sent on commit: these tests commit for real.
@pytest.mark.django_db(transaction=True)
def test_the_invitation_email_is_in_the_admins_language(admin_client, admin):
    admin_client.post(reverse("accounts:user_add"), {
        "email": "new@example.test", "role": Role.MEMBER, "licence_type": LicenceType.REGULAR},
        HTTP_ACCEPT_LANGUAGE="ja")

    assert "に追加されました" in mail.outbox[0].subject


@pytest.mark.parametrize("data, message", [
    ({"email": "boss@EXAMPLE.test"}, "An account with this email address already exists."),
    ({"email": "nope"}, "Enter a valid email address."),
    ({"licence_type": "platinum"}, "Select a valid choice."),
    ({"role": "owner"}, "Select a valid choice."),
])
def test_adding_a_user_with_bad_input_adds_nobody(admin_client, data, message):
    before = User.objects.count()
    form = {"email": "x@example.test", "role": Role.MEMBER,
            "licence_type": LicenceType.REGULAR, **data}

    response = admin_client.post(reverse("accounts:user_add"), form, HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 400
    assert message in response.content.decode()
    assert User.objects.count() == before
    assert mail.outbox == []


def test_deactivated_user_cannot_log_in_and_the_admin_is_told_the_licence_still_bills(
        admin_client, admin):
    person = UserFactory(organisation=admin.organisation, email="leaver@example.test")

    response = admin_client.post(reverse("accounts:user_deactivate", args=[person.pk]),
                                 HTTP_ACCEPT_LANGUAGE="en", follow=True)

    assert "Their licence is still billed" in response.content.decode()
    assert _state(person)[0] is False
    event = AuditEvent.objects.get(action="user.deactivated")
    assert (event.before["is_active"], event.after["is_active"]) == (True, False)
    login = Client().post(reverse("accounts:login"),
                          {"username": "leaver@example.test", "password": PASSWORD})
    assert login.status_code == 200


def test_reactivated_user_can_log_in_again(admin_client, admin):
    person = UserFactory(organisation=admin.organisation, is_active=False)

    admin_client.post(reverse("accounts:user_reactivate", args=[person.pk]))

    assert _state(person)[0] is True
    assert AuditEvent.objects.filter(action="user.reactivated", target_id=str(person.pk)).exists()
    login = Client().post(reverse("accounts:login"),
                          {"username": person.email, "password": PASSWORD})
    assert login.status_code == 302


def test_an_admin_cannot_deactivate_themselves(admin_client, admin):
    response = admin_client.post(reverse("accounts:user_deactivate", args=[admin.pk]),
                                 HTTP_ACCEPT_LANGUAGE="en", follow=True)

    assert "You cannot deactivate yourself." in response.content.decode()
    assert _state(admin)[0] is True
    assert not AuditEvent.objects.exists()


def test_the_last_active_admin_cannot_be_deactivated(admin_client, admin):
    other_admin = AdminFactory(organisation=admin.organisation, is_active=False)
    admin_client.post(reverse("accounts:user_reactivate", args=[other_admin.pk]))
    admin_client.post(reverse("accounts:user_deactivate", args=[other_admin.pk]))

    second = Client()
    second.force_login(AdminFactory(organisation=admin.organisation))
    # two active admins now: boss and the new one; deactivating boss leaves one
    assert second.post(reverse("accounts:user_deactivate", args=[admin.pk])).status_code == 302
    assert _state(admin)[0] is False


def _hold_until_blocked_or_done(*, pid: list[int], done: threading.Event) -> None:
    """Keep this connection's transaction open until the other connection waits on one of its
    locks, or has finished without waiting: no sleep decides what the test sees."""
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while not done.is_set() and time.monotonic() < deadline:
            cursor.execute("SELECT pg_backend_pid() = ANY(pg_blocking_pids(%s))", pid)
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_admins_deactivating_each_other_at_once_leave_one_active_admin():
    """The deputy asks to deactivate the boss while the boss's deactivation of the deputy is not
    yet committed: the second request must wait for the first, then refuse. Without a lock both
    pass the "another admin stays" check; only a deadlock (on the audit rows' actor keys) then
    stops one of them, as a server error."""
    boss = AdminFactory(email="boss@example.test")
    deputy = AdminFactory(organisation=boss.organisation, email="deputy@example.test")
    first_in_progress, second_started, second_finished = (
        threading.Event(), threading.Event(), threading.Event())
    second_pid, outcomes = [], {}

    def boss_deactivates_deputy():
        try:
            with transaction.atomic():
                services.user_deactivate(user=deputy, acting_user=boss)
                first_in_progress.set()
                second_started.wait(timeout=10)
                _hold_until_blocked_or_done(pid=second_pid, done=second_finished)
            outcomes["boss deactivates deputy"] = "done"
        except Exception as error:  # shown by the assertion below, not lost with the thread
            outcomes["boss deactivates deputy"] = repr(error)
        finally:
            connection.close()

    def deputy_deactivates_boss():
        try:
            first_in_progress.wait(timeout=10)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                second_pid.append(cursor.fetchone()[0])
            second_started.set()
            with translation.override("en"):
                services.user_deactivate(user=boss, acting_user=deputy)
            outcomes["deputy deactivates boss"] = "done"
        except AccountsError as error:
            outcomes["deputy deactivates boss"] = str(error)
        except Exception as error:  # shown by the assertion below, not lost with the thread
            outcomes["deputy deactivates boss"] = repr(error)
        finally:
            second_finished.set()
            connection.close()

    threads = [threading.Thread(target=boss_deactivates_deputy),
               threading.Thread(target=deputy_deactivates_boss)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert outcomes == {
        "boss deactivates deputy": "done",
        "deputy deactivates boss": "The organisation needs at least one active administrator."}
    assert list(User.objects.filter(role=Role.ADMIN, is_active=True)
                .values_list("email", flat=True)) == ["boss@example.test"]
    assert AuditEvent.objects.filter(action="user.deactivated").count() == 1


def test_deactivating_twice_says_so_and_writes_one_audit_row(admin_client, admin):
    person = UserFactory(organisation=admin.organisation)
    url = reverse("accounts:user_deactivate", args=[person.pk])

    admin_client.post(url)
    response = admin_client.post(url, HTTP_ACCEPT_LANGUAGE="en", follow=True)

    assert f"{person.email} is already deactivated." in response.content.decode()
    assert AuditEvent.objects.filter(action="user.deactivated").count() == 1


def test_another_organisations_user_id_is_a_404_and_changes_nothing(admin_client):
    stranger = UserFactory()

    response = admin_client.post(reverse("accounts:user_deactivate", args=[stranger.pk]))

    assert response.status_code == 404
    assert _state(stranger)[0] is True
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("name, method", [
    ("accounts:users", "get"), ("accounts:user_add", "get"), ("accounts:user_add", "post"),
])
def test_members_get_403_on_user_screens(client, admin, name, method):
    member = UserFactory(organisation=admin.organisation)
    client.force_login(member)

    response = getattr(client, method)(reverse(name), {"email": "x@example.test"})

    assert response.status_code == 403
    assert User.objects.count() == 2


def test_a_member_posting_to_deactivate_gets_403_and_nothing_changes(client, admin):
    member = UserFactory(organisation=admin.organisation)
    client.force_login(member)

    response = client.post(reverse("accounts:user_deactivate", args=[admin.pk]))

    assert response.status_code == 403
    assert _state(admin)[0] is True


def test_deactivate_asks_first_saying_the_licence_stays_on_the_bill(admin_client, admin):
    person = UserFactory(organisation=admin.organisation)

    response = admin_client.get(reverse("accounts:user_deactivate", args=[person.pk]),
                                HTTP_ACCEPT_LANGUAGE="en")

    page = response.content.decode()
    assert response.status_code == 200 and "stays on the bill" in page
    assert reverse("billing:licences_remove") in page
    assert _state(person)[0] is True  # a GET changes nothing


def test_a_post_without_the_csrf_token_is_refused(admin):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin)
    person = UserFactory(organisation=admin.organisation)

    response = strict.post(reverse("accounts:user_deactivate", args=[person.pk]))

    assert response.status_code == 403
    assert _state(person)[0] is True


def test_the_user_list_shows_only_this_organisations_people(admin_client, admin):
    mine = UserFactory(organisation=admin.organisation, email="mine@example.test")
    UserFactory(email="theirs@example.test")

    response = admin_client.get(reverse("accounts:users"))

    assert {row["email"] for row in response.context["users"]} == {admin.email, mine.email}
    assert "theirs@example.test" not in response.content.decode()


def test_the_user_list_query_count_does_not_grow_with_the_organisation(
        admin_client, admin, django_assert_num_queries):
    UserFactory.create_batch(25, organisation=admin.organisation)

    # session, user (with its organisation), subscription (the licence panel), user counts,
    # users
    with django_assert_num_queries(5):
        admin_client.get(reverse("accounts:users"))


def test_the_user_list_shows_25_a_page(admin_client, admin):
    UserFactory.create_batch(30, organisation=admin.organisation)
    first = admin_client.get(reverse("accounts:users"), HTTP_ACCEPT_LANGUAGE="en")
    second = admin_client.get(reverse("accounts:users"), {"page": 2},
                              HTTP_ACCEPT_LANGUAGE="en")
    assert first.content.decode().count('data-testid="user-row"') == 25
    assert second.content.decode().count('data-testid="user-row"') == 6
    assert "Page 2 of 2" in second.content.decode()
