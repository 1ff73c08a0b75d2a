"""What several browser tests do the same way."""
from tests.accounts.factories import PASSWORD


def log_in_in_japanese(page, live_server, email: str) -> None:
    page.context.add_cookies([{"name": "django_language", "value": "ja",
                               "url": live_server.url}])
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("メールアドレス").fill(email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()


def type_card(page, number: str) -> None:
    """Fill the processor's card form (localstripe's stand-in for Stripe.js)."""
    card = page.get_by_test_id("card-element")
    card.get_by_placeholder("number").fill(number)
    card.get_by_placeholder("exp_month").fill("12")
    card.get_by_placeholder("exp_year").fill("34")
    card.get_by_placeholder("cvc").fill("123")
    card.get_by_placeholder("postal_code").fill("1000001")
