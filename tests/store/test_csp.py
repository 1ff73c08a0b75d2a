"""A Content Security Policy on every page: scripts only from Kanri with the response's nonce and
from the processor's Stripe.js; the card form's inline script carries the nonce (the browser
tests enter cards under this policy)."""
import re

from django.urls import reverse

from tests.accounts.factories import AdminFactory


def test_every_page_carries_the_policy_and_the_card_script_its_nonce(client, db):
    client.force_login(AdminFactory())
    response = client.get(reverse("billing:payment_methods"))
    policy = response["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "object-src 'none'" in policy and "'unsafe-inline'" not in policy.split(
        "script-src")[1].split(";")[0]
    assert f'<script nonce="{nonce}">' in response.content.decode()
    assert "Content-Security-Policy" in client.get("/login/")
