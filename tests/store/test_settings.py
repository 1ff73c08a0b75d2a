"""Production settings pass Django's deployment checks; a missing secret is refused."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x9$Kq2!vLz7@pR4#tW8^mN1&bC6*hJ3(dF5)gS0-aQ+eY_uI=oP~lZ",
    "ALLOWED_HOSTS": "kanri.example.com",
    "DATABASE_URL": "sqlite:///:memory:",
}


def _manage(*args, env):
    unset = {"DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"}  # the browser tests set the last
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


def test_production_settings_pass_check_deploy_without_warnings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_without_a_secret_key_production_refuses_to_start():
    result = _manage("check", env={**PRODUCTION, "SECRET_KEY": ""})

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_the_migrations_match_the_models():
    result = _manage("makemigrations", "--check", "--dry-run",
                     env={"DEBUG": "1", "DATABASE_URL": "sqlite:///:memory:"})

    assert result.returncode == 0, result.stdout + result.stderr
