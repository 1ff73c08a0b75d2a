"""Production settings pass Django's deployment checks; a production start that forgot a secret,
the processor's keys or the qualified-invoice number is refused, naming what is missing."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x9$Kq2!vLz7@pR4#tW8^mN1&bC6*hJ3(dF5)gS0-aQ+eY_uI=oP~lZ",
    "ALLOWED_HOSTS": "kanri.example.com",
    "DATABASE_URL": "sqlite:///:memory:",
    "STRIPE_API_KEY": "sk_live_kanri_example",
    "STRIPE_PUBLISHABLE_KEY": "pk_live_kanri_example",
    "STRIPE_WEBHOOK_SECRET": "whsec_kanri_example",
    "KANRI_INVOICE_ISSUER_REGISTRATION": "T9876543210987",
}


def _manage(*args, env):
    """manage.py in a fresh process with the site's own settings (pytest runs with the test
    settings) and nothing of this shell's configuration that the test does not give it."""
    unset = {"DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE",  # the browser tests set the last
             "STRIPE_API_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_API_BASE",
             "STRIPE_WEBHOOK_SECRET", "KANRI_INVOICE_ISSUER_REGISTRATION"}
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT,
                          env={**clean, "DJANGO_SETTINGS_MODULE": "store.settings", **env},
                          capture_output=True, text=True, timeout=120)


def _setting(name, *, env):
    result = _manage("shell", "--verbosity", "0", "-c",
                     f"from django.conf import settings; print(settings.{name})", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_production_settings_pass_check_deploy_without_warnings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_without_a_secret_key_production_refuses_to_start():
    result = _manage("check", env={**PRODUCTION, "SECRET_KEY": ""})

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


@pytest.mark.parametrize("name, looks_like", [
    ("STRIPE_API_KEY", "the processor's secret key, e.g. sk_live_..."),
    ("STRIPE_PUBLISHABLE_KEY", "the processor's publishable key, e.g. pk_live_..."),
    ("STRIPE_WEBHOOK_SECRET", "the webhook endpoint's signing secret, e.g. whsec_..."),
    ("KANRI_INVOICE_ISSUER_REGISTRATION",
     "the qualified-invoice issuer registration number, T and 13 digits"),
])
def test_production_without_a_payment_setting_refuses_to_start_and_names_it(name, looks_like):
    env = {k: v for k, v in PRODUCTION.items() if k != name}

    result = _manage("check", env=env)

    assert result.returncode != 0
    assert f"{name} must be set when DEBUG is off: {looks_like}." in result.stderr


def test_production_refuses_the_placeholder_invoice_registration_number():
    result = _manage("check", env={**PRODUCTION,
                                   "KANRI_INVOICE_ISSUER_REGISTRATION": "T1234567890123"})

    assert result.returncode != 0
    assert "KANRI_INVOICE_ISSUER_REGISTRATION is the placeholder T1234567890123" in result.stderr


@pytest.mark.parametrize("number", [
    "9876543210987",  # no T
    "T987654321098",  # 12 digits
    "T-9876543-210987",  # hyphens
    "T９８７６５４３２１０９８７",  # full-width digits, as a Japanese IME types them
])
def test_production_refuses_an_invoice_registration_number_of_the_wrong_shape(number):
    result = _manage("check", env={**PRODUCTION, "KANRI_INVOICE_ISSUER_REGISTRATION": number})

    assert result.returncode != 0
    assert (f"KANRI_INVOICE_ISSUER_REGISTRATION={number!r} is not the qualified-invoice issuer "
            "registration number, T and 13 digits") in result.stderr


def test_production_talks_to_stripe_unless_told_otherwise():
    assert _setting("STRIPE_API_BASE", env=PRODUCTION) == "https://api.stripe.com"
    staging = {**PRODUCTION, "STRIPE_API_BASE": "https://sandbox.kanri.example.com"}
    assert _setting("STRIPE_API_BASE", env=staging) == "https://sandbox.kanri.example.com"


def test_debug_still_runs_on_the_local_sandbox_with_nothing_set():
    env = {"DEBUG": "1", "DATABASE_URL": "sqlite:///:memory:"}

    assert _setting("STRIPE_API_BASE", env=env) == "http://127.0.0.1:8420"
    assert _setting("KANRI_INVOICE_ISSUER_REGISTRATION", env=env) == "T1234567890123"


def test_the_migrations_match_the_models():
    result = _manage("makemigrations", "--check", "--dry-run",
                     env={"DEBUG": "1", "DATABASE_URL": "sqlite:///:memory:"})

    assert result.returncode == 0, result.stdout + result.stderr
