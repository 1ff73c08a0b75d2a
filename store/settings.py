"""Kanri's settings: everything comes from the environment, with embedded local defaults.

A fresh machine needs nothing running: SQLite, Celery's filesystem broker, console email and the
local payment sandbox (localstripe on loopback). Production sets the variables in the README.
"""
import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("KANRI_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)


def env_required(name: str, *, debug_default: str, looks_like: str) -> str:
    """The variable's value. Only debug has a default: a production start that forgot one stops
    here, naming it, instead of running on the sandbox's values."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if not DEBUG:
        raise ImproperlyConfigured(f"{name} must be set when DEBUG is off: {looks_like}.")
    return debug_default


SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "django-insecure-local-development-only"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    # Django admin whose site asks staff for a code from their authenticator app (django-otp).
    "store.admin_config.StaffAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "djmoney",
    "axes",
    "django_celery_beat",
    "django_celery_results",
    "ninja",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "store",
    "accounts",
    "billing",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication: marks request.user verified when the session passed the second factor.
    "django_otp.middleware.OTPMiddleware",
    "store.observability.RequestIdMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a lockout into the lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "store.urls"
WSGI_APPLICATION = "store.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
            # Kanri's tags and filters (money, capture, fixed_url) in every template.
            "builtins": ["store.templatetags.kanri"],
        },
    },
]

# Database: SQLite file by default; DATABASE_URL (e.g. postgres://...) in production and CI.
if not os.environ.get("DATABASE_URL"):
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'kanri.sqlite3'}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write to the one file at once. WAL lets readers run beside the
    # writer; every transaction takes the write lock when it begins (IMMEDIATE), so it waits its
    # turn there for up to the timeout instead of failing half-way when it first writes. It also
    # stands in for the row locks SQLite does not have (select_for_update is a no-op there):
    # transactions that write run one at a time.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        "transaction_mode": "IMMEDIATE",
        "timeout": float(os.environ.get("KANRI_SQLITE_TIMEOUT_SECONDS", "30")),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache: Redis when REDIS_URL is set, else files in var/cache/, which web, worker and beat share
# (a sweep in the worker forgets the entitlements the web process would answer with).
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "kanri"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                          "LOCATION": VAR_DIR / "cache"}}

# Accounts
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "accounts.backends.UserBackend",  # ModelBackend, reading the organisation with the user
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:home"
LOGOUT_REDIRECT_URL = "accounts:login"

# Staff's second factor for admin (django-otp, TOTP): the name authenticator apps show, and no
# device secrets or QR codes on the device pages in admin.
OTP_TOTP_ISSUER = os.environ.get("OTP_TOTP_ISSUER", "Kanri")
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# Login throttling (django-axes): five wrong passwords for one email from one address lock that
# pair out for the cool-off; the lockout page says so and when to try again.
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_MINUTES", "15")) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_FORM_FIELD = "username"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.views.lockout"
AXES_IPWARE_PROXY_COUNT = int(os.environ.get("AXES_PROXY_COUNT", "0")) or None

# Internationalisation: the browser's language picks, the switcher (a cookie) overrides.
LANGUAGE_CODE = "ja"
LANGUAGES = [("ja", _("Japanese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = os.environ.get("TIME_ZONE", "Asia/Tokyo")
USE_TZ = True

# Money
CURRENCIES = ("JPY", "USD")
CURRENCY_CHOICES = [("JPY", "JPY ¥"), ("USD", "USD $")]
DEFAULT_CURRENCY = "JPY"

# Static files
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Email: console by default; EMAIL_BACKEND and EMAIL_HOST etc. in production.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Kanri <noreply@kanri.localhost>")

# Celery: the filesystem broker by default (one folder for in and out), Redis in production.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://localhost//")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _folder in ("processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        # kombu's exchange tables; its default is "control" in whatever directory a process
        # happens to start in.
        "control_folder": str(_broker_dir / "control"),
    }
# Flower (manage.py run_flower): "user:password[,user:password]"; required when DEBUG is off.
FLOWER_BASIC_AUTH = os.environ.get("FLOWER_BASIC_AUTH", "").strip()
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE

# Payment processor: in debug, the local sandbox (localstripe on loopback) and its keys. With
# DEBUG off the keys must be given and the base defaults to Stripe's; an explicit
# STRIPE_API_BASE still wins, so staging can point at a sandbox on purpose.
STRIPE_API_KEY = env_required("STRIPE_API_KEY", debug_default="sk_test_kanri_local",
                              looks_like="the processor's secret key, e.g. sk_live_...")
STRIPE_PUBLISHABLE_KEY = env_required(
    "STRIPE_PUBLISHABLE_KEY", debug_default="pk_test_kanri_local",
    looks_like="the processor's publishable key, e.g. pk_live_...")
STRIPE_API_BASE = (os.environ.get("STRIPE_API_BASE", "").strip()
                   or ("http://127.0.0.1:8420" if DEBUG else "https://api.stripe.com"))
# Stripe.js: empty means "beside the API" (localstripe serves a stand-in there); production
# with Stripe's API base loads https://js.stripe.com/v3/.
STRIPE_JS_URL = os.environ.get("STRIPE_JS_URL", "")
# Content Security Policy (Django's own): scripts only from Kanri, with the per-response nonce,
# and from the processor's Stripe.js; its card frame and API calls to the processor. Against the
# local sandbox (any loopback port: tests start it on a free one) the sandbox's origin instead.
_STRIPE_ORIGINS = (["https://js.stripe.com", "https://*.stripe.com"]
                   if "api.stripe.com" in STRIPE_API_BASE
                   else ["http://127.0.0.1:*", "http://localhost:*"])
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE, *_STRIPE_ORIGINS],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],  # htmx adds its indicator styles inline
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF, *_STRIPE_ORIGINS],
    "frame-src": [CSP.SELF, *_STRIPE_ORIGINS],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "object-src": [CSP.NONE],
}
STRIPE_TIMEOUT_SECONDS = float(os.environ.get("STRIPE_TIMEOUT_SECONDS", "20"))
# The signing secret of the webhook endpoint (/billing/webhooks/stripe/): Stripe shows it when
# the endpoint is made; `manage.py register_sandbox_webhook` gives the sandbox this one.
STRIPE_WEBHOOK_SECRET = env_required(
    "STRIPE_WEBHOOK_SECRET", debug_default="whsec_kanri_local",
    looks_like="the webhook endpoint's signing secret, e.g. whsec_...")

# Security: strict whenever DEBUG is off (so `check --deploy` passes); SECURE_SSL_REDIRECT can be
# turned off behind a proxy that already redirects.
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(60 * 60 * 24 * 365)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    if env_bool("TRUST_X_FORWARDED_PROTO", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# JSON lines in production, readable lines locally; each with the request (or task) id and the
# organisation id (store/observability.py). `kanri.request` logs one line per request.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "store.observability.ContextFilter"}},
    "formatters": {
        "json": {"()": "store.observability.JsonFormatter"},
        "readable": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s "
                               "org=%(organisation_id)s] %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["context"],
                             "formatter": os.environ.get("LOG_FORMAT",
                                                         "readable" if DEBUG else "json")}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"axes": {"level": "WARNING"}, "stripe": {"level": "WARNING"},
                # Ten progress lines for every PDF made otherwise.
                "weasyprint": {"level": "WARNING"}},
}

# Absolute links in emails.
KANRI_BASE_URL = os.environ.get("KANRI_BASE_URL", "http://127.0.0.1:8000")

# Billing rules (SPEC.md): periods in days, tax per currency, the qualified-invoice number.
KANRI_TRIAL_DAYS = int(os.environ.get("KANRI_TRIAL_DAYS", "15"))
KANRI_TRIAL_REMINDER_DAYS = int(os.environ.get("KANRI_TRIAL_REMINDER_DAYS", "3"))
# Rows a subscription-life sweep moves per transaction (billing.services.lifecycle).
KANRI_SWEEP_BATCH = int(os.environ.get("KANRI_SWEEP_BATCH", "1000"))
# Days before the grace period ends that the admins are reminded the account will lock.
KANRI_GRACE_REMINDER_DAYS = int(os.environ.get("KANRI_GRACE_REMINDER_DAYS", "3"))
# How far ahead a default card that will have expired by the next charge is announced.
KANRI_CARD_EXPIRY_NOTICE_DAYS = int(os.environ.get("KANRI_CARD_EXPIRY_NOTICE_DAYS", "30"))
# Dunning: grace after a failed renewal, the retry days within it (counted from the due date),
# and how many calendar months a locked account waits before it moves to Free.
KANRI_GRACE_DAYS = int(os.environ.get("KANRI_GRACE_DAYS", "15"))
KANRI_DUNNING_RETRY_DAYS = [int(day) for day in
                            env_list("KANRI_DUNNING_RETRY_DAYS", "1,3,7,14")]
KANRI_LOCK_MONTHS = int(os.environ.get("KANRI_LOCK_MONTHS", "2"))
KANRI_QUOTE_MINUTES = int(os.environ.get("KANRI_QUOTE_MINUTES", "30"))
# How long a second Pay of the same quote waits for the first one's answer before it says
# "being processed" (the page then refreshes until the outcome is known).
KANRI_PAY_WAIT_SECONDS = float(os.environ.get("KANRI_PAY_WAIT_SECONDS", "10"))
KANRI_TAX_RATES = {"JPY": "0.10", "USD": "0.10"}
# The smallest amount the processor charges, per currency ("JPY:50,USD:0.50"); an amount due
# below it is not charged but waived (billing.services.charging).
KANRI_MINIMUM_CHARGE = dict(item.split(":", 1) for item in
                            env_list("KANRI_MINIMUM_CHARGE", "JPY:50,USD:0.50"))
KANRI_TAX_ROUNDING = os.environ.get("KANRI_TAX_ROUNDING", "ROUND_DOWN")
# JPY invoices print it; without the seller's own number they are not qualified invoices and the
# buyer cannot deduct their tax. Debug prints a placeholder, production must never.
_PLACEHOLDER_REGISTRATION = "T1234567890123"
_REGISTRATION_LOOKS_LIKE = "the qualified-invoice issuer registration number, T and 13 digits"
KANRI_INVOICE_ISSUER_REGISTRATION = env_required(
    "KANRI_INVOICE_ISSUER_REGISTRATION", debug_default=_PLACEHOLDER_REGISTRATION,
    looks_like=_REGISTRATION_LOOKS_LIKE)
if not DEBUG and KANRI_INVOICE_ISSUER_REGISTRATION == _PLACEHOLDER_REGISTRATION:
    raise ImproperlyConfigured(
        f"KANRI_INVOICE_ISSUER_REGISTRATION is the placeholder {_PLACEHOLDER_REGISTRATION}: set "
        f"{_REGISTRATION_LOOKS_LIKE}, as the tax office issued it.")
if not DEBUG and not re.fullmatch(r"T[0-9]{13}", KANRI_INVOICE_ISSUER_REGISTRATION):
    raise ImproperlyConfigured(
        f"KANRI_INVOICE_ISSUER_REGISTRATION={KANRI_INVOICE_ISSUER_REGISTRATION!r} is not "
        f"{_REGISTRATION_LOOKS_LIKE} (ASCII, no spaces or hyphens).")
KANRI_MAX_QUANTITY = 10_000
# New organisations' billing clock; each organisation stores its own.
KANRI_DEFAULT_TIME_ZONE = os.environ.get("KANRI_DEFAULT_TIME_ZONE", "Asia/Tokyo")
# Printed on every invoice as the seller (a snapshot is kept per invoice).
KANRI_SELLER_NAME = os.environ.get("KANRI_SELLER_NAME", "Kanri K.K.")
# What the customer buys, as the payment history and its CSV name it.
KANRI_PRODUCT_NAME = os.environ.get("KANRI_PRODUCT_NAME", "Kanri CRM")

# The CRM's API (/api/v1/): requests per key per minute (429 with Retry-After beyond), and how
# long an organisation's entitlements stay cached at most (every change to the plan, status,
# quantities, users or usage forgets them at once; the bound covers catalog edits in admin).
KANRI_API_RATE_PER_MINUTE = int(os.environ.get("KANRI_API_RATE_PER_MINUTE", "600"))
KANRI_ENTITLEMENTS_CACHE_SECONDS = int(os.environ.get("KANRI_ENTITLEMENTS_CACHE_SECONDS", "300"))
