"""Flower starts only behind authentication when DEBUG is off (manage.py run_flower)."""
import io

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings


def run(**settings) -> str:
    out = io.StringIO()
    with override_settings(**settings):
        call_command("run_flower", "--dry-run", "--port=5599", stdout=out)
    return out.getvalue()


def test_flower_refuses_to_start_in_production_without_auth():
    with pytest.raises(CommandError, match="FLOWER_BASIC_AUTH must be set when DEBUG is off"):
        run(DEBUG=False, FLOWER_BASIC_AUTH="")


def test_flower_starts_behind_basic_auth_and_never_prints_the_password():
    shown = run(DEBUG=False, FLOWER_BASIC_AUTH="ops:s3cret")
    assert "flower --port=5599 --basic-auth=***" in shown and "s3cret" not in shown


def test_a_malformed_auth_is_refused_and_local_runs_listen_on_loopback_only():
    with pytest.raises(CommandError, match="user:password pairs"):
        run(DEBUG=False, FLOWER_BASIC_AUTH="ops")
    assert "--address=127.0.0.1" in run(DEBUG=True, FLOWER_BASIC_AUTH="")
