"""The site's settings for the test suite: a fast password hash, and a cache of its own."""
from store.settings import *  # noqa: F403

# Password hashing is slow on purpose (Django's PBKDF2 runs 1,200,000 rounds, most of a second
# on a small machine), and the factories and login tests hash one password per user they make.
# MD5 is unfit for real passwords and fine for users that never leave the test database.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Without Redis the site keeps its cache in var/cache/, which a `make run` of the same checkout
# uses: the suite keeps its own beside it.
if not REDIS_URL:  # noqa: F405
    CACHES["default"]["LOCATION"] = VAR_DIR / "test-cache"  # noqa: F405
