"""The site's settings for the test suite, with one change that only tests may make."""
from store.settings import *  # noqa: F403

# Password hashing is slow on purpose (Django's PBKDF2 runs 1,200,000 rounds, most of a second
# on a small machine), and the factories and login tests hash one password per user they make.
# MD5 is unfit for real passwords and fine for users that never leave the test database.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
